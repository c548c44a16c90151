"""The audit server asks the CA: ARI from the hook's acme_server, CRLs, through the SSRF guard.

A real server, a real probe of a loopback TLS endpoint, and the CA's web
side (directory, renewalInfo, CRL) on loopback. The guard is tested where it
decides: a CA URL on a loopback address the configuration does not allow
is never connected to (the CA's server sees no request).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from ca_helpers import CaWeb, issue_with_crl, make_crl
from cryptography.hazmat.primitives.serialization import Encoding
from probe_helpers import CA, NOW, serve, write
from server_helpers import LineClient, add_line, config, new_db, running, targets, wait_until

from certhook.probe import ari
from certhook.server import store
from certhook.server.config import ServerConfig, load_config
from certhook.server.store.schema import VERSION_TABLE, create_statements
from certhook.x509 import load_der

HOUR = dt.timedelta(hours=1)
LOOPBACK_1 = (ipaddress.ip_network("127.0.0.1/32"),)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("certhook server CA test CA")


def _audit(tmp_path: Path, ca: CA, issued: Any, **changes: Any) -> dict[str, Any]:
    fields = changes.pop("fields", {})
    db, keys = new_db(tmp_path, "alice")
    roots = write(tmp_path / "roots.pem", ca.pem)
    cfg = config(db, ca_file=roots, allow_networks=LOOPBACK_1, **changes)
    with serve(issued, [issued.pem]) as endpoint, running(cfg) as srv:
        client = LineClient(srv.line_address)
        reply = client.ask(add_line(keys["alice"], "localhost", port=endpoint.port, **fields))
        assert reply.startswith(b"ok"), reply
        client.close()
        wait_until(lambda: all(t["last_probe"] for t in targets(db)), what="a probe")
    return targets(db)[0]


def _ari(web: CaWeb, issued: Any, start: dt.datetime, end: dt.datetime) -> str:
    leaf = load_der(issued.cert.public_bytes(Encoding.DER))
    web.routes["/directory"] = (200, {}, json.dumps({"renewalInfo": web.url("/ari")}).encode())
    window = {"suggestedWindow": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "end": end.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    web.routes[f"/ari/{ari.cert_id(leaf)}"] = (200, {}, json.dumps(window).encode())
    return web.url("/directory")


def test_revoked_certificate_is_critical_on_the_server(tmp_path: Path, ca: CA) -> None:
    with CaWeb("127.0.0.1") as web:
        issued = issue_with_crl(ca, "localhost", (web.url("/ca.crl"),))
        web.routes["/ca.crl"] = (200, {}, make_crl(ca, {issued.cert.serial_number: None}))
        row = _audit(tmp_path, ca, issued)
    assert row["status"] == "critical" and "revoked at " in row["reasons"], row
    assert web.hits == ["/ca.crl"]


def test_ari_from_the_hooks_acme_server(tmp_path: Path, ca: CA) -> None:
    with CaWeb("127.0.0.1") as web:
        issued = issue_with_crl(ca, "localhost", ())
        directory = _ari(web, issued, NOW - 48 * HOUR, NOW - HOUR)
        row = _audit(tmp_path, ca, issued, fields={"acme_server": directory})
    assert row["acme_server"] == directory
    assert row["status"] == "critical" and "the CA asks for renewal between" in row["reasons"]


def test_ari_from_the_issuer_mapping_and_off(tmp_path: Path, ca: CA) -> None:
    with CaWeb("127.0.0.1") as web:
        issued = issue_with_crl(ca, "localhost", ())
        directory = _ari(web, issued, NOW - HOUR, NOW + 24 * HOUR)
        row = _audit(tmp_path / "a", ca, issued, ari=(("SERVER CA TEST", directory),))
        assert row["status"] == "warning" and "asks for renewal" in row["reasons"], row
        hits = len(web.hits)
        off = _audit(tmp_path / "b", ca, issued, ari=None,
                     fields={"acme_server": directory})
        assert off["status"] == "ok" and len(web.hits) == hits


def test_ca_urls_at_a_refused_address_are_never_fetched(tmp_path: Path, ca: CA) -> None:
    # The endpoint is on 127.0.0.1 (allowed); the CA's web on 127.0.0.2 is not.
    with CaWeb("127.0.0.2") as web:
        issued = issue_with_crl(ca, "localhost", (web.url("/ca.crl"),))
        web.routes["/ca.crl"] = (200, {}, make_crl(ca, {issued.cert.serial_number: None}))
        directory = _ari(web, issued, NOW - 48 * HOUR, NOW - HOUR)
        row = _audit(tmp_path, ca, issued, fields={"acme_server": directory})
    assert web.hits == []
    assert row["status"] == "ok", row  # unknown CA status: no false alarm, no finding


def test_old_database_gains_the_column(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    # the first release's schema, before versions were recorded: no acme_server
    old_schema = ";\n".join(s for s in create_statements("sqlite", 1) if s != VERSION_TABLE)
    assert "acme_server" not in old_schema
    conn = sqlite3.connect(db)
    conn.executescript(old_schema)
    conn.execute("INSERT INTO targets (account, domain, port, protocol, created,"
                 " last_submitted) VALUES ('a', 'x.example', 443, 'tls', 1, 1)")
    conn.commit()
    conn.close()
    migrated = store.open_store(str(db))
    [row] = migrated.list_targets(None)
    assert (row.domain, row.acme_server) == ("x.example", None)
    migrated.close()
    store.open_store(str(db)).close()  # twice: nothing to add


def test_config_keys(tmp_path: Path) -> None:
    path = tmp_path / "server.conf"
    path.write_text("[audit]\nari = CN=R11,O=Let's Encrypt = https://acme.example/directory\n"
                    "  Google = https://g.example/dir\ncrl = no\n")
    cfg = load_config(str(path))
    assert cfg.ari == (("CN=R11,O=Let's Encrypt", "https://acme.example/directory"),
                       ("Google", "https://g.example/dir"))
    assert cfg.crl is False
    path.write_text("[audit]\nari = off\n")
    assert load_config(str(path)).ari is None
    assert ServerConfig().ari == () and ServerConfig().crl is True
    path.write_text("[audit]\nari = Let's Encrypt\n")
    with pytest.raises(Exception, match="ISSUER-SUBSTRING = DIRECTORY_URL"):
        load_config(str(path))
