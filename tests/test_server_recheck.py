"""How fast a user is told (issue 8), against a real ``certhook serve`` process.

The timeline with short timers: a renewal whose certificate is not served
shows ``waiting for deployment until HH:MM`` (never ``ok``) during the
grace, reaches the webhook as "not deployed" once the grace and one retry
are over, and ``certhook recheck --wait`` after the reload shows ok at once
(a recovery notice follows). A failed renewal shows at once. The server
resolves ``www.example.org`` to 127.0.0.1 by its ``[audit] resolve``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from server_helpers import (
    LineClient,
    ServeProcess,
    TlsEndpoint,
    WebhookReceiver,
    add_line,
    http,
    new_db,
    targets,
    wait_until,
)

from certhook.errors import ParseError
from certhook.server.recheck import Selector, parse_selector
from certhook.x509 import load_pem_file

DOMAIN = "www.example.org"


class Certs:
    """Two certificates for DOMAIN from one trustme CA: the old and the renewed one."""

    def __init__(self, tmp_path: Path) -> None:
        ca = trustme.CA()
        self.ca_file = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.files = []
        for name in ("old", "new"):
            leaf = ca.issue_cert(DOMAIN)
            chain, key = tmp_path / f"{name}-chain.pem", tmp_path / f"{name}-key.pem"
            chain.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
            leaf.private_key_pem.write_to_path(str(key))
            self.files.append((chain, key))
        self.old, self.new = self.files
        self.new_fingerprint = load_pem_file(self.new[0])[0].fingerprint_sha256


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return Certs(tmp_path)


@pytest.fixture
def endpoint(certs: Certs) -> Iterator[TlsEndpoint]:
    """A TLS server on loopback serving the old certificate (``load`` the new one)."""
    server = TlsEndpoint()
    server.load(*certs.old)
    yield server
    server.close()


def _audit(certs: Certs, **keys: Any) -> str:
    base = {"allow_networks": "127.0.0.0/8", "resolve": f"{DOMAIN}=127.0.0.1",
            "ca_file": str(certs.ca_file), "interval": "1h", "jitter": "0"}
    base.update({k: str(v) for k, v in keys.items()})
    return "".join(f"{k} = {v}\n" for k, v in base.items())


def _target(srv: ServeProcess, key: str) -> dict[str, Any]:
    status, data = http("GET", f"{srv.base}/api/v1/domains", key=key)
    assert status == 200, data
    found = [d for d in data["domains"] if d["domain"] == DOMAIN]
    return found[0] if found else {}


@pytest.mark.parametrize("text, selector", [
    ("www.example.org", Selector("www.example.org")),
    ("WWW.Example.org.", Selector("www.example.org")),
    ("www.example.org:443", Selector("www.example.org", 443)),
    ("mail.example.org:25/smtp", Selector("mail.example.org", 25, "smtp")),
    ("[2001:db8::1]:8443/tls", Selector("2001:db8::1", 8443, "tls")),
    ("192.0.2.1:443", Selector("192.0.2.1", 443)),
])
def test_recheck_targets_parse(text: str, selector: Selector) -> None:
    assert parse_selector(text) == selector
    assert parse_selector(str(selector)) == selector


@pytest.mark.parametrize("text", [
    "", "www.example.org:0", "www.example.org:70000", "www.example.org/smtp",
    "www.example.org:25/SMTP!", "a b", "www.example.org:port", "\x1b[2J",
])
def test_bad_recheck_targets_are_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_selector(text)


@pytest.mark.slow
def test_the_timeline_waiting_not_deployed_recheck_recovery(
    tmp_path: Path, certs: Certs, endpoint: TlsEndpoint
) -> None:
    db, keys = new_db(tmp_path, "alice")
    key = keys["alice"]
    webhook = WebhookReceiver()
    grace, retry = 4.0, 1.0
    audit = _audit(certs, grace=f"{grace:g}s", retry_interval=f"{retry:g}s", failure_threshold=2)
    notify = (f"[notify]\nbackoff = 1s\ngroup_window = 1s\n"
              f"[account alice]\nwebhook = {webhook.url}\n")
    try:
        with ServeProcess(tmp_path, db, audit, notify) as srv:
            client = LineClient(srv.line_address)
            # the renewal: certhook's hook reports the new certificate before the reload
            renewed = time.time()
            assert client.ask(add_line(key, DOMAIN, port=endpoint.port, event="deployed",
                                       fingerprint=certs.new_fingerprint)).startswith(b"ok")
            shown = wait_until(lambda: _target(srv, key).get("last_probe") and _target(srv, key),
                               what="the first probe")
            assert shown["state"] == "waiting", shown
            assert shown["reasons"][0].startswith("waiting for deployment until "), shown
            code, out, _ = srv.cli("status")
            assert code == 2 and "waiting" in out and "waiting for deployment until" in out
            status, page = http("GET", srv.base + "/", basic=("alice", key))
            assert status == 200 and ">waiting</span>" in page
            assert "waiting for deployment until" in page

            notice = wait_until(lambda: webhook.received, timeout=60, what="the alert")[0]
            alerted = time.time() - renewed
            assert notice["kind"] == "not-deployed" and notice["port"] == endpoint.port
            # after the grace and one retry (the documented timeline), not before the grace
            assert alerted >= grace, alerted
            assert _target(srv, key)["state"] == "critical"

            endpoint.load(*certs.new)  # the reload
            code, out, err = srv.cli("recheck", f"{DOMAIN}:{endpoint.port}", "--wait")
            assert code == 0, (out, err)
            assert f"alice {DOMAIN}:{endpoint.port}/tls: ok" in out
            assert _target(srv, key)["deployed"] is True
            wait_until(lambda: len(webhook.received) >= 2, what="the recovery notice")
            assert webhook.received[1]["kind"] == "recovery"
    finally:
        webhook.close()


@pytest.mark.slow
def test_a_failed_renewal_shows_at_once(tmp_path: Path, certs: Certs, endpoint: TlsEndpoint
                                        ) -> None:
    db, keys = new_db(tmp_path, "alice")
    key = keys["alice"]
    # a retry an hour away: only an immediate verdict can show the failure in time
    audit = _audit(certs, retry_interval="1h", failure_threshold=2)
    with ServeProcess(tmp_path, db, audit) as srv:
        client = LineClient(srv.line_address)
        assert client.ask(add_line(key, DOMAIN, port=endpoint.port)).startswith(b"ok")
        wait_until(lambda: _target(srv, key).get("state") == "ok", what="ok")
        assert client.ask(add_line(key, DOMAIN, port=endpoint.port, event="failed")
                          ).startswith(b"ok")
        shown = wait_until(lambda: _target(srv, key).get("state") == "warning"
                           and _target(srv, key), timeout=30, what="the failed renewal")
        assert "certbot reported a failed renewal" in shown["reasons"]


@pytest.mark.slow
def test_recheck_probes_now_and_only_what_it_names(tmp_path: Path, certs: Certs,
                                                   endpoint: TlsEndpoint) -> None:
    db, keys = new_db(tmp_path, "alice", "bob")
    with ServeProcess(tmp_path, db, _audit(certs)) as srv:
        for name in ("alice", "bob"):
            client = LineClient(srv.line_address)
            assert client.ask(add_line(keys[name], DOMAIN, port=endpoint.port)
                              ).startswith(b"ok")
        wait_until(lambda: all(t["last_probe"] for t in targets(db)), what="first probes")
        before = {t["account"]: t["last_probe"] for t in targets(db)}
        handshakes = endpoint.handshakes
        # the next probe is an hour away; recheck --wait returns well within it
        code, out, err = srv.cli("recheck", DOMAIN, "--account", "alice", "--wait")
        assert code == 0, (out, err)
        assert out.startswith(f"alice {DOMAIN}:{endpoint.port}/tls: ok"), out
        after = {t["account"]: t["last_probe"] for t in targets(db)}
        assert after["alice"] > before["alice"] and after["bob"] == before["bob"]
        assert endpoint.handshakes > handshakes

        code, out, err = srv.cli("recheck", "--all", "--account", "bob")
        assert code == 0 and out == f"bob {DOMAIN}:{endpoint.port}/tls: recheck requested\n"
        wait_until(lambda: {t["account"]: t["last_probe"] for t in targets(db)}["bob"]
                   > before["bob"], what="bob's recheck")

        code, out, err = srv.cli("recheck", "nothing.example.org")
        assert code == 1 and "no nothing.example.org" in err and out == ""
        code, out, err = srv.cli("recheck")
        assert code == 2 and "name one TARGET, or --all" in err
        code, out, err = srv.cli("recheck", "bad:target:x")
        assert code == 2 and "Traceback" not in err


@pytest.mark.slow
def test_recheck_over_the_api_is_account_isolated(tmp_path: Path, certs: Certs,
                                                  endpoint: TlsEndpoint) -> None:
    db, keys = new_db(tmp_path, "alice", "bob")
    with ServeProcess(tmp_path, db, _audit(certs)) as srv:
        url = f"{srv.base}/api/v1/recheck"
        assert LineClient(srv.line_address).ask(
            add_line(keys["alice"], DOMAIN, port=endpoint.port)).startswith(b"ok")
        wait_until(lambda: all(t["last_probe"] for t in targets(db)), what="the first probe")
        first = targets(db)[0]["last_probe"]

        # bob's key cannot reach alice's target, by name or with "all"
        status, data = http("POST", url, {"target": f"{DOMAIN}:{endpoint.port}/tls"},
                            key=keys["bob"])
        assert status == 404 and data["ok"] is False
        status, data = http("POST", url, {"all": True}, key=keys["bob"])
        assert status == 404
        status, _ = http("POST", url, {"all": True}, key="not-a-key")
        assert status == 401
        for bad in ({}, {"all": True, "target": DOMAIN}, {"target": "a b"}, [DOMAIN]):
            status, data = http("POST", url, bad, key=keys["alice"])
            assert status == 400 and data["error"] == "syntax", (bad, data)
        time.sleep(2.5)  # longer than the auditor's poll: nothing was marked
        assert targets(db)[0]["last_probe"] == first

        status, data = http("POST", url, {"target": DOMAIN}, key=keys["alice"])
        assert status == 200 and data["ok"] is True
        assert data["targets"] == [{"domain": DOMAIN, "port": endpoint.port, "protocol": "tls"}]
        wait_until(lambda: targets(db)[0]["last_probe"] > first, timeout=30,
                   what="the recheck over the API")
