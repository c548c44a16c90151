"""``[audit] resolve``: the auditor connects to a listed address for a name, as curl --resolve."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme
from server_helpers import (
    CountingListener,
    LineClient,
    TlsEndpoint,
    add_line,
    config,
    new_db,
    running,
    targets,
    wait_until,
)

from certhook.errors import ParseError
from certhook.server.config import load_config


def test_resolve_is_parsed_and_checked(tmp_path: Path) -> None:
    conf = tmp_path / "server.conf"
    conf.write_text("[audit]\nresolve = WWW.example.org.=127.0.0.1, v6.example.org=[::1]\n")
    assert load_config(conf).resolve == (("www.example.org", "127.0.0.1"),
                                         ("v6.example.org", "::1"))
    for bad in ("www.example.org", "www.example.org=not-an-ip", "=127.0.0.1"):
        conf.write_text(f"[audit]\nresolve = {bad}\n")
        with pytest.raises(ParseError, match="resolve"):
            load_config(conf)


def _no_lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any name lookup other than of an IP literal fails the test."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(str(host))
        except ValueError:
            asked.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, "lookup refused by the test") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    return asked


def _submit_and_audit(cfg: Any, key: str, port: int) -> dict[str, Any]:
    """Submit www.example.org on ``port``, wait for its first probe, return its row."""
    with running(cfg) as srv:
        client = LineClient(srv.line_address)
        assert client.ask(add_line(key, "www.example.org", port=port)).startswith(b"ok")
        client.close()
        wait_until(lambda: all(t["last_probe"] for t in targets(cfg.db)), what="a probe")
        return targets(cfg.db)[0]


def test_a_resolved_name_is_probed_at_its_address_with_its_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    endpoint = TlsEndpoint()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("www.example.org").configure_cert(context)
    seen_sni: list[str | None] = []

    def record_sni(sock: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        seen_sni.append(name)

    context.sni_callback = record_sni  # type: ignore[assignment]
    endpoint.context = context
    asked = _no_lookups(monkeypatch)
    db, keys = new_db(tmp_path, "alice")
    cfg = config(db, ca_file=str(ca_file), resolve=(("www.example.org", "127.0.0.1"),),
                 allow_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    try:
        row = _submit_and_audit(cfg, keys["alice"], endpoint.port)
    finally:
        endpoint.close()
    assert row["status"] == "ok", row
    assert seen_sni[:1] == ["www.example.org"]
    assert asked == []


def test_resolve_does_not_bypass_the_ssrf_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = _no_lookups(monkeypatch)
    listener = CountingListener()
    db, keys = new_db(tmp_path, "alice")
    cfg = config(db, resolve=(("www.example.org", "127.0.0.1"),))  # loopback not allowed
    try:
        row = _submit_and_audit(cfg, keys["alice"], listener.port)
    finally:
        listener.close()
    assert listener.accepted == 0
    assert row["status"] == "unknown"
    assert "not allowed" in row["reasons"] or "loopback" in row["reasons"], row
    assert asked == []
