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
    # the configured deadline, not the default 10 s, is the one applied (and said) ...
    assert proc.stderr.count("\n") == 1 and "did not answer within 1 s" in proc.stderr
    # ... and it ends: the silent peer would hold it until run_dropin's 60 s timeout
    assert elapsed < 30


@pytest.mark.parametrize("mode", ["garbage", "close", "unavailable", "echo-key"])
def test_bash_warns_once_and_never_shows_the_key(tmp_path: Path, live: Path,
                                                 mode: str) -> None:
    with LineServer(mode) as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url, deadline="2",
                          spool_dir=str(tmp_path / "spool"))
        proc, elapsed = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live),
                                   RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0 and elapsed < 30  # deadline 2 s; a hang is 60 s
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


@pytest.mark.parametrize(("flags", "kinds"), [([], ["deploy"]), (["--post"], ["deploy", "post"])])
def test_install_hook_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    flags: list[str], kinds: list[str]) -> None:
    config = tmp_path / "letsencrypt"
    config.mkdir()
    targets = [config / "renewal-hooks" / kind / "certhook.sh" for kind in kinds]
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert capsys.readouterr().out.count(" installed ") == len(kinds)
    shipped = DEPLOY.read_bytes()
    command = f"certhook_installed=({VENV_BIN / 'certhook'})\n".encode()
    for target in targets:
        assert target.stat().st_mode & 0o7777 == 0o755
        assert target.read_bytes() == shipped.replace(b"certhook_installed=()\n", command)
    assert (config / "renewal-hooks" / "post").exists() == ("post" in kinds)
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert capsys.readouterr().out.count("already installed") == len(kinds)
    targets[-1].write_text("#!/bin/sh\n# an older certhook\n")
    targets[-1].chmod(0o700)
    assert main(["install-hook", "--config-dir", str(config), *flags]) == 0
    assert "updated" in capsys.readouterr().out
    for target in targets:
        assert target.stat().st_mode & 0o7777 == 0o755
        assert sorted(os.listdir(target.parent)) == [target.name]


def test_install_hook_needs_a_certbot_directory(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["install-hook", "--config-dir", str(tmp_path / "nope")]) == 1
    assert "no such directory" in capsys.readouterr().err


# -- issue 8.1: a port-less bash submission never hides the richer one -------------

PORTS = "[ports]\na.example.org = 20443, 25/smtp\n"


def _with_ports(conf: Path, text: str = PORTS) -> Path:
    conf.write_text(conf.read_text() + text)
    return conf


def _hook_env(monkeypatch: pytest.MonkeyPatch, conf: Path, live: Path) -> None:
    for variable in ("CERTHOOK_SERVER", "CERTHOOK_API_KEY", "CERTHOOK_SPOOL_DIR"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
    monkeypatch.setenv("RENEWED_LINEAGE", str(live))
    monkeypatch.setenv("RENEWED_DOMAINS", DOMAINS)


def test_a_spooled_portless_line_does_not_suppress_the_hook_with_ports(
        tmp_path: Path, live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The scenario: the drop-in's bash fallback (here one that knew
    # nothing of [ports], as before 8.1) spooled a port-less line for this
    # renewal; then `certhook hook` as --deploy-hook flushes it and must still
    # send its own submission, the one with the ports.
    port = closed_port()
    conf = write_conf(tmp_path / "certhook.conf", f"tcp://127.0.0.1:{port}",
                      spool_dir=str(tmp_path / "spool"))
    proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert "1 spooled in" in proc.stderr
    [line] = Spool(str(tmp_path / "spool")).names()
    assert " port " not in (tmp_path / "spool" / line).read_text()
    _with_ports(conf)
    _hook_env(monkeypatch, conf, live)
    with LineServer(port=port) as server:
        assert main(["hook", "--deploy"]) == 0
    fingerprint = sha256_of_pem(live / "cert.pem")
    assert [(r.client, r.ports, r.protocols, r.fingerprint) for r in server.requests] == [
        ("bash", (), (), fingerprint),
        ("certhook/0.1.0", (20443, 25), ("tls", "smtp"), fingerprint)]
    assert Spool(str(tmp_path / "spool")).names() == []


def test_bash_then_hook_in_one_renewal_send_the_ports_once(
        tmp_path: Path, live: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same renewal, both components as shipped: the bash fallback spools
    # the [ports] it read; the hook sees that identical submission waiting,
    # flushes it and does not send its own copy.
    port = closed_port()
    conf = _with_ports(write_conf(tmp_path / "certhook.conf", f"tcp://127.0.0.1:{port}",
                                  spool_dir=str(tmp_path / "spool")))
    proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert "1 spooled in" in proc.stderr
    _hook_env(monkeypatch, conf, live)
    with LineServer(port=port) as server:
        assert main(["hook", "--deploy"]) == 0
    assert [(r.client, r.ports, r.protocols) for r in server.requests] == [
        ("bash", (20443, 25), ("tls", "smtp"))]


def test_the_dropin_knows_every_protocol_the_probe_does() -> None:
    from certhook.probe.starttls import protocol_for_port
    from certhook.probe.targets import known_protocols

    text = DEPLOY.read_text()
    [line] = [line for line in text.splitlines() if line.startswith("certhook_protocols=")]
    table = dict(row.split("=") for row in line.split('"')[1].split())
    assert {name: int(port) for name, port in table.items()} == known_protocols()
    assert all(protocol_for_port(int(port)) == name for name, port in table.items())


# [ports] values: the bash client must send what `certhook hook` sends.
PORTS_TABLE = [
    "20443",
    "20443, 25/smtp",
    "25/smtp 587 993",
    "smtp, imap, 443",
    "443",
    "tls",
    "443, 20443/tls, 20443",
    "0020443 , ,25",
    "20443,\n  25/smtp,\n\n  # a comment\n  993",
    "xmpp-server 5432",
    # refused, then the lineage goes without ports
    "25/SMTP",
    "70000",
    "0",
    "20443/",
    "/smtp",
    "smtp/25",
    "foo",
    "443, 25/gopher",
    "99999999999999999999999",
    "²",
]


@pytest.mark.parametrize("value", PORTS_TABLE)
def test_bash_reads_ports_as_certhook_does(tmp_path: Path, live: Path, value: str) -> None:
    from certhook.client.changes import Change
    from certhook.client.config import load_config
    from certhook.client.submit import submissions_for

    with LineServer() as server:
        conf = _with_ports(write_conf(tmp_path / "certhook.conf", server.url,
                                      spool_dir=str(tmp_path / "spool")),
                           f"[ports]\nother.example.org = 25\nA.example.org = {value}\n")
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    config = load_config(str(conf))
    [sub], problems = submissions_for([Change("deployed", "a.example.org", DOMAINS.split())],
                                      config)
    [request] = server.requests
    assert (request.ports, request.protocols) == (sub.request.ports, sub.request.protocols)
    assert proc.returncode == 0
    if problems:
        assert proc.stderr.count("\n") == 1 and str(conf) in proc.stderr
        assert "reporting a.example.org without ports" in proc.stderr
    else:
        assert proc.stderr == ""


def test_bash_reads_ports_from_default_and_ignores_other_sections(tmp_path: Path,
                                                                  live: Path) -> None:
    with LineServer() as server:
        conf = _with_ports(write_conf(tmp_path / "certhook.conf", server.url,
                                      spool_dir=str(tmp_path / "spool")),
                           "[DEFAULT]\na.example.org = 20443\n[other]\nserver = x\n")
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.stderr == ""
    assert [r.ports for r in server.requests] == [(20443,)]


# -- issue 8.1: the drop-in finds the certhook that installed it ----------------

HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # what cron and systemd give certbot


def test_installed_dropin_runs_its_certhook_on_certbots_path(
        tmp_path: Path, live: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    assert main(["install-hook", "--config-dir", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"it runs {VENV_BIN / 'certhook'}" in out
    with LineServer() as server:
        conf = _with_ports(write_conf(tmp_path / "certhook.conf", server.url,
                                      spool_dir=str(tmp_path / "spool")))
        proc, _ = run_dropin(config / "renewal-hooks" / "deploy" / "certhook.sh", conf,
                             path=HOOK_PATH, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [(r.client, r.ports) for r in server.requests] == [("certhook/0.1.0", (20443, 25))]


def test_install_hook_prints_a_deploy_hook_that_works_on_certbots_path(
        tmp_path: Path, live: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    assert main(["install-hook", "--config-dir", str(tmp_path / "config"), "--post"]) == 0
    [line] = [line for line in capsys.readouterr().out.splitlines() if "--deploy-hook" in line]
    words = shlex.split(line.split("certbot renew ", 1)[1])
    assert words[0] == "--deploy-hook" and words[2] == "--post-hook"
    assert words[1] == f"{VENV_BIN / 'certhook'} hook"
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        # certbot runs a hook's command line with the shell (certbot/_internal/hooks.py)
        proc = subprocess.run(["/bin/sh", "-c", words[1]], cwd="/", capture_output=True,
                              text=True, timeout=60,
                              env={"PATH": HOOK_PATH, "CERTHOOK_CONFIG": str(conf),
                                   "RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": DOMAINS})
    assert (proc.returncode, proc.stderr) == (0, "")
    assert [r.client for r in server.requests] == ["certhook/0.1.0"]


def test_a_dropin_whose_certhook_is_gone_still_reports(tmp_path: Path, live: Path) -> None:
    from certhook.commands.install_hook import install

    gone = tmp_path / "venv" / "bin" / "certhook"
    target, what = install(str(tmp_path / "config"), "deploy", [str(gone)])
    assert what == "installed"
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url,
                          spool_dir=str(tmp_path / "spool"))
        proc, _ = run_dropin(Path(target), conf, path=HOOK_PATH,
                             RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0
    assert [r.client for r in server.requests] == ["bash"]
    assert proc.stderr.count("\n") == 1
    assert f"{gone} (the certhook that installed this hook) is gone" in proc.stderr


def test_install_hook_without_a_command_installs_the_shipped_file(tmp_path: Path) -> None:
    from certhook.commands.install_hook import install

    target, _ = install(str(tmp_path), "deploy", None)
    assert Path(target).read_bytes() == DEPLOY.read_bytes()


# -- issue 9.6: the bash client's spool, poisoned ------------------------------

BAD_LINES = {
    "brackets": b"[" * 60000,
    "huge": b"command add domain " + b"a" * (1 << 20) + b"\n",
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "no-newline-garbage": b"\x00\x01\x02",
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_bash_moves_a_corrupt_spool_line_aside(tmp_path: Path, live: Path, name: str) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir(mode=0o700)
    good = "command add domain old.example.org event deployed id 00000000000000aa client bash"
    (spool_dir / "1700000000000-00000000000000aa.line").write_text(good + "\n")
    bad = f"1700000000001-{name}.line"
    (spool_dir / bad).write_bytes(BAD_LINES[name])
    with LineServer() as server:
        conf = write_conf(tmp_path / "certhook.conf", server.url, spool_dir=str(spool_dir))
        proc, _ = run_dropin(DEPLOY, conf, RENEWED_LINEAGE=str(live), RENEWED_DOMAINS=DOMAINS)
    assert proc.returncode == 0
    assert [r.domains for r in server.requests] == [("old.example.org",), tuple(DOMAINS.split())]
    assert proc.stderr.count("\n") == 1
    assert f"spool file {bad} is unreadable" in proc.stderr
    assert (spool_dir / "corrupt" / bad).read_bytes() == BAD_LINES[name]
    assert Spool(str(spool_dir)).names() == []


def test_install_hook_warns_when_no_absolute_command_runs_this_certhook(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Debian's python3 without certhook: neither /usr/bin/certhook nor
    # `/usr/bin/python3 -m certhook` (run from /) is this certhook.
    monkeypatch.setattr(sys, "executable", "/usr/bin/python3")
    assert main(["install-hook", "--config-dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert "installed" in out and "--deploy-hook" not in out
    assert err.count("\n") == 1 and "looks for certhook on certbot's PATH" in err
    installed = tmp_path / "renewal-hooks" / "deploy" / "certhook.sh"
    assert installed.read_bytes() == DEPLOY.read_bytes()
