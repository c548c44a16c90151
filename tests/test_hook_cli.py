"""``certhook hook``: delivers, or spools with one warning line; exits 0; bounded in time."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from client_helpers import (
    KEY,
    LineServer,
    client_env,
    closed_port,
    make_lineage,
    renew_lineage,
    sha256_of_pem,
)

from certhook.cli import main
from certhook.client.spool import Spool
from certhook.commands import hook as hook_command

VENV_BIN = Path(sys.executable).parent
DOMAINS = "a.example.org www.a.example.org"


@pytest.fixture
def live(tmp_path: Path) -> Path:
    return make_lineage(tmp_path / "config", "a.example.org", *DOMAINS.split())


@pytest.fixture
def hook_env(tmp_path: Path, live: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("CERTHOOK_", "RENEWED_", "FAILED_")):
            monkeypatch.delenv(name)
    (tmp_path / "empty.conf").touch()
    monkeypatch.setenv("CERTHOOK_CONFIG", str(tmp_path / "empty.conf"))
    monkeypatch.setenv("CERTHOOK_API_KEY", KEY)
    monkeypatch.setenv("CERTHOOK_SPOOL_DIR", str(tmp_path / "spool"))
    monkeypatch.setenv("RENEWED_LINEAGE", str(live))
    monkeypatch.setenv("RENEWED_DOMAINS", DOMAINS)
    yield


def test_deploy_hook_delivers_quietly(hook_env: None, live: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["hook"]) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", "")
    [request] = server.requests
    assert request.domains == tuple(DOMAINS.split())
    assert request.fingerprint == sha256_of_pem(live / "cert.pem")
    assert (request.lineage, request.event) == ("a.example.org", "deployed")
    assert request.client == "certhook/0.1.0" and request.apikey == KEY


def test_the_same_certificate_is_not_reported_twice(hook_env: None, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["hook"]) == 0
        assert main(["hook"]) == 0  # certbot reinstall, or a second deploy hook
        # The post hook of the same run sees the renewal again.
        monkeypatch.setenv("FAILED_DOMAINS", "")
        assert main(["hook", "--post", "--config-dir", str(tmp_path / "config"),
                     "--logs-dir", str(tmp_path / "logs")]) == 0
        monkeypatch.delenv("FAILED_DOMAINS")
        assert len(server.requests) == 1
        renew_lineage(tmp_path / "config", "a.example.org", *DOMAINS.split())
        assert main(["hook"]) == 0
        assert len(server.requests) == 2


# server behaviour -> words of the warning
FAILURES = [
    ("refused", "connection refused"),
    ("silent", "timed out"),
    ("garbage", "not ok or error"),
    ("close", "closed the connection before answering"),
    ("unavailable", "error unavailable"),
    ("auth", "error auth"),
]


@pytest.mark.parametrize(("mode", "words"), FAILURES)
def test_failures_spool_and_say_one_line(
    hook_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str], mode: str, words: str,
) -> None:
    server = LineServer("ok" if mode == "refused" else mode)
    url = f"tcp://127.0.0.1:{closed_port()}" if mode == "refused" else server.start().url
    monkeypatch.setenv("CERTHOOK_SERVER", url)
    try:
        started = time.monotonic()
        code = main(["hook", "--deadline", "1"])
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    out, err = capsys.readouterr()
    assert code == 0
    assert elapsed < 6  # --deadline 1, far below the default 10 s and a silent peer
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("certhook hook: warning: ")
    assert words in err and url in err and "spooled in" in err
    assert KEY not in err
    assert len(Spool(str(tmp_path / "spool")).names()) == 1
    strict = main(["hook", "--deadline", "1", "--strict"])
    assert strict == 1


def test_hook_returns_within_its_deadline_as_a_process(tmp_path: Path, live: Path) -> None:
    with LineServer("silent") as server:
        env = client_env(tmp_path, server.url, RENEWED_LINEAGE=str(live),
                         RENEWED_DOMAINS=DOMAINS)
        started = time.monotonic()
        proc = subprocess.run([str(VENV_BIN / "certhook"), "hook", "--deadline", "1.5"],
                              env=env, capture_output=True, text=True, timeout=30)
        elapsed = time.monotonic() - started
    assert proc.returncode == 0
    assert elapsed < 30  # --deadline 1.5; a hang is run's 30 s timeout (the
    # in-process test above checks --deadline against the default 10 s)
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "timed out" in proc.stderr


def test_a_broken_config_still_spools(hook_env: None, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text(f"[client]\nserver = tcp://127.0.0.1:1\napi_key = {KEY}\ndeadline = soon\n")
    conf.chmod(0o600)
    monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
    assert main(["hook"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "configuration unusable" in err and "deadline" in err
    assert KEY not in err
    assert len(Spool(str(tmp_path / "spool")).names()) == 1


def test_an_unexpected_fault_never_breaks_certbot(hook_env: None,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def broken(environ: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr("certhook.client.changes.deploy_change", broken)
    monkeypatch.setenv("CERTHOOK_SERVER", "tcp://127.0.0.1:1")
    assert main(["hook"]) == 0
    err = capsys.readouterr().err
    assert err == "certhook hook: warning: nothing reported: RuntimeError: a bug\n"
    assert main(["hook", "--strict"]) == 1


def test_world_readable_key_file_warns_once(hook_env: None, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with LineServer() as server:
        conf = tmp_path / "certhook.conf"
        conf.write_text(f"[client]\nserver = {server.url}\napi_key = {KEY}\n")
        conf.chmod(0o644)
        monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
        monkeypatch.delenv("CERTHOOK_API_KEY")
        assert main(["hook"]) == 0
        assert len(server.requests) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "readable by group or others" in err


def test_post_hook_reports_failed_domains(hook_env: None, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config"
    make_lineage(config, "b.example.org", "b.example.org")
    monkeypatch.setenv("FAILED_DOMAINS", "b.example.org")
    monkeypatch.setenv("RENEWED_DOMAINS", DOMAINS)
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["hook", "--config-dir", str(config),
                     "--logs-dir", str(tmp_path / "logs")]) == 0
    assert [(r.event, r.lineage, r.domains) for r in server.requests] == [
        ("deployed", "a.example.org", tuple(DOMAINS.split())),
        ("failed", "b.example.org", ("b.example.org",)),
    ]


def test_ports_mapping_from_the_config(hook_env: None, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    with LineServer() as server:
        conf = tmp_path / "certhook.conf"
        conf.write_text(f"[client]\nserver = {server.url}\n\n[ports]\n"
                        "a.example.org = 443, 25/smtp, 993\n")
        monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
        assert main(["hook"]) == 0
    [request] = server.requests
    assert (request.ports, request.protocols) == ((443, 25, 993), ("tls", "smtp", "tls"))


def test_flush_exit_codes(hook_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    port = closed_port()
    monkeypatch.setenv("CERTHOOK_SERVER", f"tcp://127.0.0.1:{port}")
    assert main(["flush"]) == 0  # nothing waiting
    assert main(["hook"]) == 0
    capsys.readouterr()
    assert main(["flush"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "1 submission still waiting" in err
    with LineServer(port=port) as server:
        assert main(["flush"]) == 0
        assert len(server.requests) == 1
    assert "delivered 1 submission" in capsys.readouterr().out


def test_report_syncs_every_lineage(hook_env: None, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    make_lineage(config, "b.example.org", "b.example.org")
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["report", "--config-dir", str(config)]) == 0
        assert main(["report", "--config-dir", str(config), "--lineage", "b.example.org"]) == 0
    assert [(r.event, r.lineage) for r in server.requests] == [
        ("sync", "a.example.org"), ("sync", "b.example.org"), ("sync", "b.example.org")]
    for request in server.requests:
        pem = config / "live" / str(request.lineage) / "cert.pem"
        assert request.fingerprint == sha256_of_pem(pem)
    assert "reported 2 lineages" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["report", "--config-dir", str(config), "--lineage", "nope"])


def test_an_unreadable_certificate_still_reports_the_names(
    hook_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    empty = tmp_path / "config" / "live" / "gone.example.org"
    empty.mkdir(parents=True)
    monkeypatch.setenv("RENEWED_LINEAGE", str(empty))
    monkeypatch.setenv("RENEWED_DOMAINS", "gone.example.org")
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["hook"]) == 0
    assert [(r.lineage, r.domains, r.fingerprint) for r in server.requests] == [
        ("gone.example.org", ("gone.example.org",), None)]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without its fingerprint" in err


def test_a_corrupt_spool_file_is_reported_by_the_hook(
    hook_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "0000000000001-broken.json").write_text("{")
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        assert main(["hook"]) == 0
        assert len(server.requests) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "0000000000001-broken.json is unreadable" in err
    assert (tmp_path / "spool" / "corrupt" / "0000000000001-broken.json").exists()


def _log_records(start: datetime, *records: str) -> bytes:
    """certbot log records ("LEVEL:logger:message"), a second apart from ``start``."""
    lines = [f"{(start + timedelta(seconds=n)).strftime('%Y-%m-%d %H:%M:%S')},{n:03}:{record}"
             for n, record in enumerate(records)]
    return ("\n".join(lines) + "\n").encode()


_NOTIFY = "DEBUG:certbot._internal.display.obj:Notifying user: "
_RUN_HEAD = ("DEBUG:certbot._internal.main:certbot version: 5.8.0",
             "DEBUG:certbot._internal.main:Arguments: ['-q']")
_RENEWED_A = (f"{_NOTIFY}Processing /etc/letsencrypt/renewal/a.example.org.conf",
              "INFO:certbot._internal.renewal:Certificate is due for renewal, auto-renewing...",
              f"{_NOTIFY}Congratulations, all renewals succeeded: ",
              f"{_NOTIFY}  /etc/letsencrypt/live/a.example.org/fullchain.pem (success)")


def test_post_hook_without_variables_reads_huge_logs_within_its_deadline(
        tmp_path: Path, live: Path) -> None:
    # The attack: one 60 MB line took 39.8 s with --deadline 5, and the
    # 3 newest logs were read in full whatever their size.
    logs = tmp_path / "logs"
    logs.mkdir()
    now = datetime.now().replace(microsecond=0)
    with open(logs / "letsencrypt.log", "wb") as stream:
        stream.write(_log_records(now - timedelta(minutes=2), *_RUN_HEAD))
        stream.write(b"x" * (60 << 20) + b"\n")  # a continuation line of 60 MB
        stream.write(_log_records(now - timedelta(minutes=1), *_RENEWED_A))
    line = _log_records(now - timedelta(days=1), "DEBUG:acme.client:Sending GET request")
    for number in (1, 2):  # older runs: 40 MB of ordinary lines each
        (logs / f"letsencrypt.log.{number}").write_bytes(line * ((40 << 20) // len(line)))
    deadline = 3.0
    with LineServer() as server:
        env = client_env(tmp_path, server.url)
        started = time.monotonic()
        proc = subprocess.run(
            [str(VENV_BIN / "certhook"), "hook", "--post", "--deadline", str(deadline),
             "--config-dir", str(tmp_path / "config"), "--logs-dir", str(logs)],
            env=env, capture_output=True, text=True, timeout=120)
        elapsed = time.monotonic() - started
    assert (proc.returncode, proc.stderr) == (0, "")
    assert elapsed < deadline + 5  # far from the 40 s it took
    # The run after the long line was still read: the renewal is reported.
    assert [(r.event, r.lineage) for r in server.requests] == [("deployed", "a.example.org")]


def test_post_hook_stops_reading_the_log_at_the_deadline(
        hook_env: None, tmp_path: Path, live: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = datetime.now()
    (logs / "letsencrypt.log").write_bytes(
        _log_records(now - timedelta(minutes=1), *_RUN_HEAD, *_RENEWED_A))
    for name in ("RENEWED_LINEAGE", "RENEWED_DOMAINS"):
        monkeypatch.delenv(name)
    argv = ["hook", "--post", "--config-dir", str(tmp_path / "config"), "--logs-dir", str(logs)]
    with LineServer() as server:
        monkeypatch.setenv("CERTHOOK_SERVER", server.url)
        with monkeypatch.context() as clock:  # the log's time is up when reading starts
            clock.setattr(hook_command, "_log_deadline", lambda deadline: time.monotonic() - 1)
            assert main(argv) == 0
        assert server.requests == []
        assert main(argv) == 0  # with time, the same log reports
        assert [(r.event, r.lineage) for r in server.requests] == [
            ("deployed", "a.example.org")]
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"{logs}/letsencrypt.log: reading stopped at the deadline" in err
