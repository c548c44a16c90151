"""``certhook run``: the command's I/O and exit status untouched, signals passed on, a report."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import LineServer, client_env, closed_port, make_lineage, sha256_of_pem

VENV_BIN = Path(sys.executable).parent
CERTHOOK = str(VENV_BIN / "certhook")
HELPERS = str(Path(__file__).parent)


def certhook_run(tmp_path: Path, *command: str, server: str | None = None,
                 **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = client_env(tmp_path, server or f"tcp://127.0.0.1:{closed_port()}")
    (tmp_path / "config").mkdir(exist_ok=True)  # an empty certbot: nothing to report
    return subprocess.run([CERTHOOK, "run", "--config-dir", str(tmp_path / "config"),
                           "--logs-dir", str(tmp_path / "logs"), "--", *command],
                          env=env, capture_output=True, text=True, timeout=60,
                          **kwargs)  # type: ignore[call-overload]


@pytest.mark.parametrize("code", [0, 1, 3, 127])
def test_exit_status_is_the_commands(tmp_path: Path, code: int) -> None:
    proc = certhook_run(tmp_path, "sh", "-c", f"exit {code}")
    assert proc.returncode == code


def test_output_and_input_pass_through(tmp_path: Path) -> None:
    proc = certhook_run(tmp_path, "sh", "-c", "cat; echo to-stderr >&2", input="to-stdin\n")
    assert proc.stdout == "to-stdin\n"
    assert proc.stderr == "to-stderr\n"


def test_killed_by_a_signal_is_128_plus_n(tmp_path: Path) -> None:
    proc = certhook_run(tmp_path, "sh", "-c", "kill -TERM $$")
    assert proc.returncode == 128 + signal.SIGTERM


def test_missing_command_is_127(tmp_path: Path) -> None:
    proc = certhook_run(tmp_path, "/nonexistent/certbot", "renew")
    assert proc.returncode == 127 and "command not found" in proc.stderr


CHILD = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))
# Started from a shell's background job, SIGINT comes ignored, and Python then
# installs no KeyboardInterrupt handler of its own: install it.
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    print("ready", flush=True)
    time.sleep(30)
except KeyboardInterrupt:
    sys.exit(9)
"""


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 7), (signal.SIGINT, 9)])
def test_signals_sent_to_certhook_reach_the_command(tmp_path: Path, signum: int,
                                                    code: int) -> None:
    env = client_env(tmp_path, f"tcp://127.0.0.1:{closed_port()}")
    proc = subprocess.Popen([CERTHOOK, "run", "--config-dir", str(tmp_path / "config"), "--",
                             sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    started = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(20) == code
    assert time.monotonic() - started < 5


RENEW = """
import sys
sys.path.insert(0, {helpers!r})
from pathlib import Path
from client_helpers import renew_lineage
renew_lineage(Path(sys.argv[sys.argv.index("--config-dir") + 1]), "a.example.org",
              "a.example.org", "www.a.example.org")
print("renewed")
"""


def test_reports_what_the_command_renewed(tmp_path: Path) -> None:
    config = tmp_path / "config"
    make_lineage(config, "a.example.org", "a.example.org", "www.a.example.org")
    make_lineage(config, "b.example.org", "b.example.org")
    script = RENEW.format(helpers=HELPERS)
    with LineServer() as server:
        env = client_env(tmp_path, server.url)
        # the directories come from the wrapped command's own --config-dir
        proc = subprocess.run([CERTHOOK, "run", sys.executable, "-c", script,
                               "--config-dir", str(config)], env=env, capture_output=True,
                              text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "renewed\n", "")
    [request] = server.requests
    assert (request.event, request.lineage) == ("deployed", "a.example.org")
    assert request.fingerprint == sha256_of_pem(config / "live" / "a.example.org" / "cert.pem")


def test_reporting_failures_never_change_the_exit_status(tmp_path: Path) -> None:
    config = tmp_path / "config"
    make_lineage(config, "a.example.org", "a.example.org", "www.a.example.org")
    script = RENEW.format(helpers=HELPERS) + "\nsys.exit(4)\n"
    proc = certhook_run(tmp_path, sys.executable, "-c", script, "--config-dir", str(config))
    assert proc.returncode == 4
    assert proc.stderr.count("\n") == 1 and "connection refused" in proc.stderr


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([CERTHOOK, "run"], capture_output=True, text=True)
    assert proc.returncode == 2 and "no command to run" in proc.stderr
