"""Matches local: a real certbot lineage (pebble on loopback) against what a server serves.

The case nobody else checks: certbot renewed, but the service still serves
the old certificate because nobody reloaded it.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from acmeenv import Certbot
from probe_helpers import Server, write

from certhook.cli import main

pytestmark = pytest.mark.slow


def _live(certbot: Certbot, name: str) -> tuple[bytes, bytes]:
    live = certbot.config_dir / "live" / name
    return (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes()


def _probe(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]]]:
    code = main(["probe", "--format", "json", *argv])
    return code, json.loads(capsys.readouterr().out)


def test_renewed_but_not_reloaded(certbot: Certbot, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    certbot.certonly("a.example.org", "www.a.example.org")
    ca_file = write(tmp_path / "pebble-roots.pem", certbot.pebble.roots_pem().encode())
    old_chain, old_key = _live(certbot, "a.example.org")
    certbot.renew()
    new_chain, new_key = _live(certbot, "a.example.org")
    assert new_chain != old_chain
    common = ["--servername", "www.a.example.org", "--config-dir", str(certbot.config_dir),
              "--ca-file", ca_file]

    with Server(chain=[old_chain], key=old_key) as stale:
        code, [report] = _probe(capsys, f"127.0.0.1:{stale.port}", *common)
    assert (code, report["status"], report["local_match"]) == (2, "critical", False)
    assert report["trusted"] is True and report["name_check"] is True
    [reason] = report["reasons"]
    assert reason.startswith("not the current certbot certificate for www.a.example.org")

    with Server(chain=[new_chain], key=new_key) as fresh:
        code, [report] = _probe(capsys, f"127.0.0.1:{fresh.port}", *common)
    assert (code, report["status"], report["local_match"]) == (0, "ok", True)

    # A name no lineage holds: nothing to compare with.
    with Server(chain=[new_chain], key=new_key) as fresh:
        code, [report] = _probe(capsys, f"127.0.0.1:{fresh.port}", *common,
                                "--expect-name", "b.example.org", "--name-check", "none")
    assert (code, report["local_match"]) == (0, None)


def test_from_certbot_probes_every_name_on_its_ports(
    certbot: Certbot, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    certbot.certonly("a.example.org", "www.a.example.org")
    ca_file = write(tmp_path / "pebble-roots.pem", certbot.pebble.roots_pem().encode())
    chain, key = _live(certbot, "a.example.org")
    real_getaddrinfo = socket.getaddrinfo

    def loopback(host: str, *args: Any, **kwargs: Any) -> Any:
        assert host.endswith("a.example.org"), host  # no other name is ever looked up
        return real_getaddrinfo("127.0.0.1", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback)
    with Server(chain=[chain], key=key) as server:
        conf = tmp_path / "certhook.conf"
        conf.write_text(f"[ports]\na.example.org = {server.port}\n")
        code, report = _probe(capsys, "--from-certbot", "--config-dir", str(certbot.config_dir),
                              "--conf", str(conf), "--ca-file", ca_file)
    assert code == 0, report
    assert [(r["target"], r["status"], r["local_match"]) for r in report] == [
        (f"a.example.org:{server.port}", "ok", True),
        (f"www.a.example.org:{server.port}", "ok", True),
    ]
    assert sorted(server.snis) == ["a.example.org", "www.a.example.org"]
