"""The API key never shows: not in output, warnings, spool files or their names, errors, reprs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from client_helpers import KEY, HttpServer, LineServer, closed_port, make_lineage, write_conf

from certhook.client.config import load_config, parse_servers
from certhook.client.spool import Spool
from certhook.client.submit import Submission, build_requests, deliver
from certhook.client.transport import Deadline, HttpSession
from certhook.protocol import Request

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
DOMAINS = "a.example.org www.a.example.org"
MODES = ["refused", "silent", "garbage", "close", "unavailable", "syntax", "auth", "echo-key"]


def assert_no_key_anywhere(root: Path, *texts: str) -> None:
    for text in texts:
        assert KEY not in text
    for path in root.rglob("*"):
        assert KEY not in path.name, path
        if path.is_file() and path.suffix != ".conf" and path.name != "key":
            assert KEY.encode() not in path.read_bytes(), path


def start(mode: str) -> tuple[LineServer | None, str]:
    if mode == "refused":
        return None, f"tcp://127.0.0.1:{closed_port()}"
    server = LineServer(mode).start()
    return server, server.url


@pytest.mark.parametrize("mode", MODES)
def test_every_command_keeps_the_key_to_itself(tmp_path: Path, mode: str) -> None:
    live = make_lineage(tmp_path / "config", "a.example.org", *DOMAINS.split())
    server, url = start(mode)
    conf = write_conf(tmp_path / "certhook.conf", url, deadline="0.8",
                      spool_dir=str(tmp_path / "spool"))
    env = {"PATH": "/usr/bin:/bin", "CERTHOOK_CONFIG": str(conf),
           "RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": DOMAINS}
    outputs: list[str] = []
    post_dir = tmp_path / "config" / "renewal-hooks" / "post"  # where it is a post hook
    post_dir.mkdir(parents=True)
    shutil.copy(ROOT / "hooks" / "certhook.sh", post_dir / "certhook.sh")
    commands = [
        [str(VENV_BIN / "certhook"), "hook"],
        [str(VENV_BIN / "certhook"), "hook", "--strict", "--debug"],
        [str(VENV_BIN / "certhook"), "flush"],
        [str(VENV_BIN / "certhook"), "report", "--config-dir", str(tmp_path / "config")],
        [str(VENV_BIN / "certhook"), "run", "--config-dir", str(tmp_path / "config"), "--",
         "true"],
        ["/bin/bash", str(ROOT / "hooks" / "certhook.sh")],
        ["/bin/bash", str(post_dir / "certhook.sh")],
    ]
    try:
        for argv in commands:
            proc = subprocess.run(argv, env={**env, "FAILED_DOMAINS": "b.example.org"}
                                  if "/post/" in argv[-1] else env,
                                  capture_output=True, text=True, timeout=60)
            outputs += [proc.stdout, proc.stderr]
    finally:
        if server is not None:
            server.stop()
    assert any("warning" in out for out in outputs)
    assert_no_key_anywhere(tmp_path, *outputs)


@pytest.mark.parametrize("mode", MODES)
def test_errors_and_reprs_keep_the_key_to_themselves(tmp_path: Path, mode: str) -> None:
    server, url = start(mode)
    try:
        config = load_config(str(write_conf(tmp_path / "c.conf", url, spool_dir=str(
            tmp_path / "spool"))), environ={})
        subs = [Submission(r) for r in build_requests(["a.example.org"], event="deployed")]
        outcome = deliver(config, subs, Deadline(0.8))
    finally:
        if server is not None:
            server.stop()
    texts = [repr(config), str(outcome.warning()), *outcome.errors,
             *(repr(s) for s in subs), *(str(s.error) for s in subs)]
    entries, _ = Spool(config.spool_dir).pending()
    texts += [repr(e) for e in entries] + [repr(e.request) for e in entries]
    assert_no_key_anywhere(tmp_path, *texts)


def test_https_key_travels_only_in_the_header(tmp_path: Path) -> None:
    request = Request(domains=("a.example.org",), apikey=KEY, id="0" * 16)
    assert KEY not in repr(request)
    with HttpServer("unavailable") as server:
        session = HttpSession(parse_servers(server.url)[0], Deadline(5), KEY)
        response = session.submit(request)
    assert not response.ok
    assert KEY not in repr(session) + repr(response)
    assert all(KEY.encode() not in body for body in server.bodies)


def test_bad_server_url_with_the_key_in_it_is_not_echoed(tmp_path: Path) -> None:
    (tmp_path / "empty.conf").touch()
    proc = subprocess.run([str(VENV_BIN / "certhook"), "flush", "--server",
                           f"https://user:{KEY}@audit.example.org"],
                          env={"PATH": "/usr/bin:/bin",
                               "CERTHOOK_CONFIG": str(tmp_path / "empty.conf"),
                               "CERTHOOK_SPOOL_DIR": str(tmp_path / "spool")},
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "credentials" in proc.stderr
    assert KEY not in proc.stdout + proc.stderr
