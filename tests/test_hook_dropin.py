"""The drop-in hooks: plain bash delivery without Python, delegation to certhook, installing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from client_helpers import KEY, LineServer, closed_port, make_lineage, sha256_of_pem, write_conf

from certhook.cli import main
from certhook.client.spool import Spool
from certhook.commands.install_hook import dropin_path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "hooks" / "certhook.sh"  # run from anywhere but a post/ directory: deploy
VENV_BIN = Path(sys.executable).parent
BARE_PATH = "/usr/bin:/bin"  # no certhook, and a python3 without it
DOMAINS = "a.example.org www.a.example.org"


def installed(tmp_path: Path, kind: str) -> Path:
    """The drop-in as certbot's hook directory holds it: CONFIG/renewal-hooks/KIND/."""
    target = tmp_path / "config" / "renewal-hooks" / kind / DEPLOY.name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(DEPLOY.read_bytes())
    target.chmod(0o755)
    return target


def run_dropin(script: Path, conf: Path, path: str = BARE_PATH, cwd: Path | None = None,
               **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    full = {"PATH": path, "CERTHOOK_CONFIG": str(conf), "HOME": "/nonexistent", **env}
    started = time.monotonic()
    proc = subprocess.run(["/bin/bash", str(script)], env=full, capture_output=True, text=True,
                          timeout=60, cwd=cwd or ROOT)  # cwd with a certhook/ dir in it
    return proc, time.monotonic() - started


@pytest.fixture
def live(tmp_path: Path) -> Path:
    return make_lineage(tmp_path / "config", "a.example.org", *DOMAINS.split())


def test_no_certhook_on_the_bare_path() -> None:
    proc = subprocess.run(["/bin/bash", "-c", "command -v certhook; cd / && python3 -c "
                           "'import certhook' 2>/dev/null && echo importable"],
                          env={"PATH": BARE_PATH}, capture_output=True, text=True)
    assert proc.stdout == ""


def test_bash_delivers_without_python(tmp_path: Path, live: Path) -> None:
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    [request] = server.requests
    assert request.domains == tuple(DOMAINS.split())
    assert request.fingerprint == sha256_of_pem(live / "cert.pem")
    assert (request.lineage, request.event, request.client) == (
        "a.example.org", "deployed", "bash")
    assert request.id is not None and len(request.id) == 16
    assert request.apikey == KEY


def test_bash_reads_the_key_from_api_key_file(tmp_path: Path, live: Path) -> None:
    (tmp_path / "key").write_text(KEY + "\n")
    with LineServer() as server:
        conf = tmp_path / "certhook.conf"
        conf.write_text(f"[client]\n# comment\nServer = https://x.example, {server.url}\n"
                        f"api_key_file = key\nspool_dir: {tmp_path / 'spool'}\n")
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0 and proc.stderr == ""
    assert [r.apikey for r in server.requests] == [KEY]


def test_bash_spools_then_retries_and_flush_takes_its_files(tmp_path: Path,
                                                            live: Path) -> None:
    port = closed_port()
    conf = write_conf(tmp_path / "certhook.conf", f"tcp://127.0.0.1:{port}",
                      spool_dir=str(tmp_path / "spool"))
    proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "1 spooled in" in proc.stderr
    assert KEY not in proc.stderr
    [first] = Spool(str(tmp_path / "spool")).names()
    assert first.endswith(".line")
    assert KEY not in (tmp_path / "spool" / first).read_text()
    proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert len(Spool(str(tmp_path / "spool")).names()) == 2
    with LineServer(port=port) as server:
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_DOMAINS="c.example.org")
        assert proc.returncode == 0 and proc.stderr == ""
        # the two spooled lines first, in order, then the new one
        assert [r.domains for r in server.requests] == [
            tuple(DOMAINS.split()), tuple(DOMAINS.split()), ("c.example.org",)]
        assert server.requests[0].id == first.split("-")[1].split(".")[0]
    assert Spool(str(tmp_path / "spool")).names() == []


def test_python_flush_delivers_bash_spool_files(tmp_path: Path, live: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    conf = write_conf(tmp_path / "certhook.conf", f"tcp://127.0.0.1:{port}",
                      spool_dir=str(tmp_path / "spool"))
    run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    [name] = Spool(str(tmp_path / "spool")).names()
    monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
    for variable in ("CERTHOOK_SERVER", "CERTHOOK_API_KEY", "CERTHOOK_SPOOL_DIR"):
        monkeypatch.delenv(variable, raising=False)
    with LineServer(port=port) as server:
        assert main(["flush"]) == 0
    assert [(r.id, r.client) for r in server.requests] == [(name[14:30], "bash")]


def test_bash_is_bounded_by_the_deadline(tmp_path: Path, live: Path) -> None:
    with LineServer("silent") as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url, deadline="1",
                          spool_dir=str(tmp_path / "spool"))
        proc, elapsed = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live),
                                   RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0
    assert elapsed < 6  # deadline 1 s, far below the default 10 s and a silent peer
    assert proc.stderr.count("\n") == 1 and "did not answer" in proc.stderr


@pytest.mark.parametrize("mode", ["garbage", "close", "unavailable", "echo-key"])
def test_bash_warns_once_and_never_shows_the_key(tmp_path: Path, live: Path,
                                                 mode: str) -> None:
    with LineServer(mode) as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url, deadline="2",
                          spool_dir=str(tmp_path / "spool"))
        proc, elapsed = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live),
                                   RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0 and elapsed < 6  # deadline 2 s (default 10 s)
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("certhook deploy hook:")
    assert KEY not in proc.stderr
    assert len(Spool(str(tmp_path / "spool")).names()) == 1


def test_bash_syntax_errors_go_to_rejected(tmp_path: Path, live: Path) -> None:
    with LineServer("syntax") as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0 and "refused as malformed" in proc.stderr
    assert len(os.listdir(tmp_path / "spool" / "rejected")) == 1


def test_bash_splits_long_lists_into_lines_that_fit(tmp_path: Path) -> None:
    names = " ".join(f"host-{n:03d}-{'x' * 40}.example.org" for n in range(100))
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_DOMAINS=names)
    assert proc.returncode == 0 and proc.stderr == ""
    assert len(server.requests) > 1
    assert " ".join(d for r in server.requests for d in r.domains) == names
    assert max(len(line) for line in server.lines) + 2 <= 1000


def test_bash_post_hook_reports_failures(tmp_path: Path) -> None:
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        # RENEWED_LINEAGE is what certbot leaves in its environment from the last
        # deploy hook: installed in post/, the script is a post hook all the same.
        proc, _ = run_dropin(installed(tmp_path, "post"), conf, RENEWED_DOMAINS="a.example.org",
                             RENEWED_LINEAGE=str(tmp_path / "config" / "live" / "a.example.org"),
                             FAILED_DOMAINS="b.example.org *.c.example.org")
    assert proc.returncode == 0 and proc.stderr == ""
    assert [(r.event, r.domains) for r in server.requests] == [
        ("deployed", ("a.example.org",)), ("failed", ("b.example.org", "*.c.example.org"))]


def test_bash_post_hook_leaves_renewals_to_an_installed_deploy_hook(tmp_path: Path) -> None:
    installed(tmp_path, "deploy")
    post = installed(tmp_path, "post")
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(post, conf, RENEWED_DOMAINS="a.example.org",
                             FAILED_DOMAINS="b.example.org")
    assert proc.returncode == 0
    assert [(r.event, r.domains) for r in server.requests] == [("failed", ("b.example.org",))]


def test_dropin_runs_certhook_when_installed(tmp_path: Path, live: Path) -> None:
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(DEPLOY, conf, path=f"{VENV_BIN}:{BARE_PATH}",
                             RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [(r.client, r.fingerprint) for r in server.requests] == [
        ("certhook/0.1.0", sha256_of_pem(live / "cert.pem"))]


def test_dropin_exits_0_with_nothing_configured(tmp_path: Path, live: Path) -> None:
    proc, _ = run_dropin(DEPLOY, tmp_path / "missing.conf", RENEWED_LINEAGE=str(live),
                         RENEWED_DOMAINS=DOMAINS, CERTHOOK_SPOOL_DIR=str(tmp_path / "spool"))
    assert proc.returncode == 0
    assert "no tcp:// server configured" in proc.stderr
    assert len(Spool(str(tmp_path / "spool")).names()) == 1


def test_hooks_directory_is_the_shipped_dropin() -> None:
    assert DEPLOY.resolve() == Path(dropin_path()).resolve()
    assert DEPLOY.stat().st_mode & stat.S_IXUSR


@pytest.mark.parametrize(("flags", "kind"), [([], "deploy"), (["--post"], "post")])
def test_install_hook_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    flags: list[str], kind: str) -> None:
    config = tmp_path / "letsencrypt"
    config.mkdir()
    target = config / "renewal-hooks" / kind / "certhook.sh"
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert "installed" in capsys.readouterr().out
    assert target.stat().st_mode & 0o7777 == 0o755
    assert target.read_bytes() == DEPLOY.read_bytes()
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert "already installed" in capsys.readouterr().out
    target.write_text("#!/bin/sh\n# an older certhook\n")
    target.chmod(0o700)
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert "updated" in capsys.readouterr().out
    assert target.stat().st_mode & 0o7777 == 0o755
    assert sorted(os.listdir(target.parent)) == [target.name]


def test_install_hook_needs_a_certbot_directory(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-hook", "--config-dir", str(tmp_path / "nope")]) == 1
    assert "no such directory" in capsys.readouterr().err
