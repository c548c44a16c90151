"""The whole loop on loopback: certbot, the hook, the server, the probe, the report.

Real certbot gets a certificate from pebble; its deploy hook (a bare bash
/dev/tcp client, or the project's drop-in ``hooks/certhook.sh``
running ``certhook hook``) submits it over the line protocol; the server probes a
loopback TLS endpoint serving it and reports it ok. Then certbot renews
while the endpoint keeps serving the old certificate: the server reports
"renewed but not deployed" and the notice reaches a real SMTP server and a
webhook. The name ``www.example.org`` resolves to 127.0.0.1 through a
replaced resolver, and 127.0.0.0/8 is allowed in the server's config.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from acmeenv import Certbot, Pebble
from server_helpers import (
    SmtpServer,
    TlsEndpoint,
    WebhookReceiver,
    config,
    count,
    http,
    new_db,
    resolve_names,
    running,
    wait_until,
)

from certhook.cli import main
from certhook.server.config import AccountNotify, SmtpConfig
from certhook.x509 import load_pem_file

DOMAIN = "www.example.org"
HOOKS = Path(__file__).resolve().parent.parent / "hooks"


def write_bash_hook(path: Path, line_address: tuple[str, int], key: str, port: int,
                    out: Path) -> Path:
    """A certbot deploy hook in plain bash: the KeyChest-style /dev/tcp client.

    It submits the renewed domains, the port to audit and the SHA-256 of the
    deployed certificate, and appends the server's answer to ``out``.
    """
    host, line_port = line_address
    path.write_text(f"""#!/bin/bash
set -e
fp=$(openssl x509 -in "$RENEWED_LINEAGE/cert.pem" -outform DER | sha256sum | cut -d' ' -f1)
line="command add"
for d in $RENEWED_DOMAINS; do line="$line domain $d"; done
line="$line port {port} fingerprint $fp lineage $(basename "$RENEWED_LINEAGE")"
line="$line event deployed client bash apikey {key}"
exec 3<>/dev/tcp/{host}/{line_port}
echo -e "$line" >&3
dd bs=1000 count=1 <&3 2>/dev/null >> {out}
""")
    path.chmod(0o755)
    return path


def _target(base: str, key: str) -> dict[str, object]:
    status, data = http("GET", f"{base}/api/v1/domains", key=key)
    assert status == 200
    found = [d for d in data["domains"] if d["domain"] == DOMAIN]
    return found[0] if found else {}


def _dropin_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 line_address: tuple[str, int], key: str, port: int) -> Path:
    """The project's drop-in hook, running ``certhook hook`` with a conf naming the port."""
    conf = tmp_path / "certhook.conf"
    conf.write_text(f"[client]\nserver = tcp://{line_address[0]}:{line_address[1]}\n"
                    f"api_key = {key}\nspool_dir = {tmp_path / 'spool'}\n"
                    f"[ports]\n{DOMAIN} = {port}\n")
    conf.chmod(0o600)
    monkeypatch.setenv("CERTHOOK_CONFIG", str(conf))
    venv_bin = str(Path(sys.executable).parent)
    monkeypatch.setenv("PATH", f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    return HOOKS / "certhook.sh"


@pytest.mark.slow
@pytest.mark.parametrize("hook_kind", ["bash-dev-tcp", "drop-in"])
def test_full_loop(pebble: Pebble, certbot: Certbot, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                   hook_kind: str) -> None:
    resolve_names(monkeypatch, {DOMAIN: "127.0.0.1"})
    roots = tmp_path / "pebble-roots.pem"
    roots.write_text(pebble.roots_pem())
    live = certbot.config_dir / "live" / DOMAIN
    endpoint = TlsEndpoint(live / "fullchain.pem", live / "privkey.pem")
    smtp = SmtpServer(tmp_path)
    webhook = WebhookReceiver()
    db, keys = new_db(tmp_path, "alice")
    key = keys["alice"]
    cfg = replace(
        config(db, allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), ca_file=str(roots),
               grace=0.0, failure_threshold=2, retry_interval=0.2, interval=3600.0),
        smtp=SmtpConfig(host="127.0.0.1", port=smtp.port, username=smtp.USER,
                        password=smtp.PASSWORD, ca_file=smtp.ca_file, timeout=5.0),
        accounts={"alice": AccountNotify(email=("ops@test.example",), webhook=(webhook.url,))},
        notify_backoff=0.2,
    )
    try:
        with running(cfg) as srv:
            assert srv.line_address and srv.http_address
            base = f"http://127.0.0.1:{srv.http_address[1]}"
            if hook_kind == "drop-in":
                hook = _dropin_hook(tmp_path, monkeypatch, srv.line_address, key, endpoint.port)
            else:
                answers = tmp_path / "hook-answers"
                hook = write_bash_hook(tmp_path / "hook.sh", srv.line_address, key,
                                       endpoint.port, answers)
            certbot.certonly(DOMAIN, extra=("--deploy-hook", str(hook)))
            assert count(db, "submissions", event="deployed") == 1
            if hook_kind == "drop-in":  # certhook hook, not the drop-in's bash fallback
                assert count(db, "submissions",
                                 client=lambda c: (c or "").startswith("certhook/")) == 1
            else:
                assert answers.read_bytes().startswith(b"ok id ")
            first = load_pem_file(live / "cert.pem")[0]

            shown = wait_until(lambda: _target(base, key).get("state") == "ok"
                               and _target(base, key), what="the target ok")
            assert shown["days_left"] == first.days_left()
            assert shown["deployed"] is True
            assert shown["served_fingerprint"] == first.fingerprint_sha256
            assert shown["port"] == endpoint.port and shown["status"] == "ok"
            status, page = http("GET", base + "/", basic=("alice", key))
            assert status == 200 and DOMAIN in page and 'class="state ok"' in page
            assert f"<td>{first.days_left()} d</td>" in page  # time left
            assert 'class="match">= deployed</span>' in page
            assert smtp.messages == [] and webhook.received == []  # nothing wrong so far

            # Renew; the endpoint keeps serving the old certificate.
            certbot.renew()
            assert count(db, "submissions", event="deployed") == 2
            second = load_pem_file(live / "cert.pem")[0]
            assert second.fingerprint_sha256 != first.fingerprint_sha256
            shown = wait_until(lambda: _target(base, key).get("state") == "critical"
                               and _target(base, key), what="not deployed")
            assert shown["deployed"] is False
            assert shown["expected_fingerprint"] == second.fingerprint_sha256
            assert shown["served_fingerprint"] == first.fingerprint_sha256
            assert shown["reasons"][0].startswith("renewed but not deployed")
            wait_until(lambda: smtp.messages and webhook.received, what="notices")
            status, page = http("GET", base + "/", basic=("alice", key))
            assert 'class="state critical"' in page and "renewed but not deployed" in page
            assert 'class="mismatch">&ne; deployed</span>' in page
    finally:
        endpoint.close()
        smtp.close()
        webhook.close()
    notice = webhook.received[0]
    assert notice["kind"] == "not-deployed" and notice["domain"] == DOMAIN
    assert notice["expected_fingerprint"] == second.fingerprint_sha256
    mail = smtp.messages[0].content.decode()
    assert "CRITICAL" in mail and DOMAIN in mail and "renewed but not deployed" in mail
    assert main(["status", "--db", db]) == 2
    out = capsys.readouterr().out
    assert DOMAIN in out and "critical" in out and "renewed but not deployed" in out
