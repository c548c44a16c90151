"""What certbot runs, ``certhook hook`` (``--deploy``): the same hook, without argparse, lean.

certbot runs the hook on every renewal (``--deploy-hook "certhook hook"``,
the drop-ins' ``certhook hook --deploy``), and the issue sets its start-up
budget (bench/hook.py). These tests hold the fast path to meaning exactly
what argparse would make of the same command line, and to loading none of
the modules that would blow the budget.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import KEY, LineServer, closed_port, make_lineage, sha256_of_pem

from certhook import cli
from certhook.client.spool import Spool
from certhook.commands.hook import HookOptions

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DOMAINS = "a.example.org www.a.example.org"

# Not one of these may be loaded by a deploy hook delivering over tcp://:
# each costs 1-9 ms of start-up, against a budget of ~5 ms (docs: bench/hook.py).
HEAVY = ("re", "enum", "socket", "selectors", "configparser", "json", "typing", "dataclasses",
         "ssl", "urllib", "hashlib", "argparse", "gettext", "locale", "threading", "inspect",
         "encodings.ascii")


@pytest.fixture
def live(tmp_path: Path) -> Path:
    return make_lineage(tmp_path / "config", "a.example.org", *DOMAINS.split())


def hook_environment(work: Path, live: Path, server_url: str, conf: str = "") -> dict[str, str]:
    """A deploy hook's environment for ``live``: the server in certhook's INI
    file, the spool in ``work``."""
    path = work / "certhook.conf"
    path.write_text(f"# certhook\n[client]\nserver = {server_url}\napi_key = {KEY}\n{conf}")
    path.chmod(0o600)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CERTHOOK_", "RENEWED_", "FAILED_", "PYTHON"))}
    env.update({"CERTHOOK_CONFIG": str(path), "CERTHOOK_SPOOL_DIR": str(work / "spool"),
                "RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": DOMAINS})
    return env


@pytest.mark.parametrize(("argv", "kind"), cli.CERTBOT_HOOKS.items())
def test_certbot_hooks_are_what_argparse_makes_of_them(argv: tuple[str, ...],
                                                      kind: str | None) -> None:
    assert HookOptions.from_namespace(cli.parse_args(list(argv))) == HookOptions(kind=kind)


def test_hook_options_from_flags() -> None:
    assert HookOptions() == HookOptions(kind=None, strict=False, deadline=None)
    written_out = HookOptions.from_namespace(cli.parse_args(["hook", "--deadline", "10"]))
    assert written_out == HookOptions(deadline=10.0)
    assert HookOptions.from_namespace(cli.parse_args(["--debug", "hook"])) == HookOptions(
        debug=True)
    assert HookOptions.from_namespace(cli.parse_args(["hook", "--strict"])) != HookOptions()


@pytest.mark.parametrize("argv", [["hook"], ["hook", "--deploy"]])
def test_certbot_hooks_build_no_parser(tmp_path: Path, live: Path, argv: list[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parser(selected: str | None) -> None:
        raise AssertionError("argparse built for what certbot runs")

    with LineServer() as server:
        for name, value in hook_environment(tmp_path, live, server.url).items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(cli, "_build_parser", no_parser)
        assert cli.main(argv) == 0
    assert [r.lineage for r in server.requests] == ["a.example.org"]


def _run_hook(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "certhook"), *argv], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("server_mode", ["ok", "refused"])
@pytest.mark.parametrize("argv", [["hook"], ["hook", "--deploy"]])
def test_certbot_hook_and_the_default_written_out_behave_identically(
        tmp_path: Path, live: Path, argv: list[str], server_mode: str) -> None:
    outcomes = []
    with LineServer() as server:
        url = server.url if server_mode == "ok" else f"tcp://127.0.0.1:{closed_port()}"
        for run in ("bare", "flags"):
            work = tmp_path / run
            if run == "flags":
                argv = [*argv, "--deadline", "10"]
            work.mkdir()
            env = hook_environment(work, live, url)
            proc = _run_hook(argv, env)
            spooled = [(e.request.lineage, e.request.event, e.request.domains,
                        e.request.fingerprint, e.request.client, e.request.apikey)
                       for e in Spool(str(work / "spool")).pending(quarantine=False)[0]]
            outcomes.append((proc.returncode, proc.stdout,
                             proc.stderr.replace(str(work), "WORK"), spooled))
        requests = [(r.lineage, r.event, r.domains, r.fingerprint, r.client, r.apikey)
                    for r in server.requests]
    assert outcomes[0] == outcomes[1]
    code, out, err, spooled = outcomes[0]
    assert code == 0 and out == ""
    expected = ("a.example.org", "deployed", tuple(DOMAINS.split()),
                sha256_of_pem(live / "cert.pem"), "certhook/0.1.0", KEY)
    if server_mode == "ok":
        assert (err, spooled) == ("", [])
        assert requests == [expected, expected]
    else:
        assert err.startswith("certhook hook: warning: 1 submission not delivered")
        assert "connection refused" in err and "spooled in WORK/spool" in err
        assert spooled == [(*expected[:-1], None)] and requests == []  # no key in the spool


def test_hook_help_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["hook", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: certhook hook ")
    assert "--deadline SECONDS" in out and "--strict" in out
    proc = subprocess.run([str(VENV_BIN / "certhook"), "hook", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: certhook hook ")


def test_a_usage_error_still_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["hook", "--deadline", "soon"])
    assert info.value.code == 2
    assert "invalid float value: 'soon'" in capsys.readouterr().err


# Runs in a fresh interpreter without site (-S): the development venv's
# editable-install finder imports re and more at start-up, which would hide
# an import of them by certhook. The source tree goes first on sys.path.
_PROBE = """
import sys
before = set(sys.modules)
sys.path.insert(0, sys.argv[1])
from certhook.cli import main
code = main(sys.argv[2:])
print(" ".join(sorted(before)))
print(" ".join(sorted(set(sys.modules) - before)))
sys.exit(code)
"""


# [ports] for another lineage (the section is read, not mapped), then for the
# lineage renewed (mapped: most users have one).
PORTS = {
    "other lineage": ("[ports]\nmail.example.org = 25/smtp\n", ()),
    "this lineage": ("[ports]\na.example.org = 443, 25/smtp, imap\n  8443\n",
                     ((443, "tls"), (25, "smtp"), (143, "imap"), (8443, "tls"))),
}


@pytest.mark.parametrize("ports", PORTS)
@pytest.mark.parametrize("journal", ["none yet", "present"])
@pytest.mark.parametrize("argv", [["hook"], ["hook", "--deploy"]])
def test_the_tcp_hook_path_loads_no_heavy_module(tmp_path: Path, live: Path, argv: list[str],
                                                 journal: str, ports: str) -> None:
    conf, expected = PORTS[ports]
    with LineServer() as server:
        # [ports] may name another lineage: it must exist, or the hook warns.
        make_lineage(tmp_path / "config", "mail.example.org", "mail.example.org")
        env = hook_environment(tmp_path, live, server.url, conf)
        if journal == "present":
            (tmp_path / "spool").mkdir(mode=0o700)
            (tmp_path / "spool" / ".delivered").write_text("1700000000 deployed x.org ab\n")
        proc = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(ROOT), *argv], env=env,
                              capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stderr) == (0, "")
    before, loaded = (line.split() for line in proc.stdout.splitlines())
    assert [r.lineage for r in server.requests] == ["a.example.org"]  # it did deliver
    assert tuple(zip(server.requests[0].ports, server.requests[0].protocols)) == expected
    assert "certhook.client.transport" in loaded and "_socket" in loaded
    assert not set(HEAVY) & set(before)  # else this test could not see them
    assert sorted(set(HEAVY) & set(loaded)) == []
    assert not [name for name in loaded
                if name.startswith(("urllib.", "email.", "http.", "certhook.probe"))]


def test_the_certhook_command_is_a_plain_script() -> None:
    # pip's console-script launcher for [project.scripts] imports re first.
    launcher = VENV_BIN / "certhook"
    first, *rest = launcher.read_text().splitlines()
    assert first == f"#!{VENV_BIN / 'python'}" or first.startswith(f"#!{VENV_BIN}/python")
    body = [line for line in rest if line.strip() and not line.startswith("#")]
    assert body == ["import sys", "from certhook.cli import main", "sys.exit(main())"]
    assert (ROOT / "bin" / "certhook").read_text().splitlines()[1:] == rest
