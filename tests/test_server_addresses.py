"""The server audits every address of a name: a real renewal deployed on two of three.

certbot gets a certificate from pebble; three loopback servers (127.0.0.1,
127.0.0.2, ::1, one port) serve it; ``[audit] resolve`` lists the three
addresses for the name. certbot renews (its deploy hook submits the new
fingerprint over the line protocol), two servers reload, ::1 does not: the
server reports "renewed but not deployed on ::1 (2 of 3 addresses serve
the new certificate)".
"""

from __future__ import annotations

import errno
import ipaddress
from contextlib import ExitStack
from pathlib import Path

import pytest
from acmeenv import Certbot
from probe_helpers import Server
from server_helpers import config, new_db, running, targets, wait_until
from test_server_loop import write_bash_hook

DOMAIN = "www.example.org"
ADDRESSES = ("127.0.0.1", "127.0.0.2", "::1")


def _same_port(stack: ExitStack, chain: bytes, key: bytes) -> list[Server]:
    for _ in range(20):
        first = stack.enter_context(Server(chain=[chain], key=key, host=ADDRESSES[0]))
        try:
            return [first, *(stack.enter_context(Server(chain=[chain], key=key, host=host,
                                                        port=first.port))
                             for host in ADDRESSES[1:])]
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
    raise AssertionError("no port free on all three addresses")


def _reload(server: Server, chain: bytes, key: bytes) -> None:
    """What ``systemctl reload nginx`` does on one node: serve the new files."""
    server.chain, server.key = [chain], key
    server.context = server._context()


@pytest.mark.slow
def test_renewed_but_not_deployed_on_one_address(certbot: Certbot, tmp_path: Path) -> None:
    roots = tmp_path / "pebble-roots.pem"
    roots.write_text(certbot.pebble.roots_pem())
    certbot.certonly(DOMAIN)
    live = certbot.config_dir / "live" / DOMAIN
    old = (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes()
    db, keys = new_db(tmp_path, "alice")
    cfg = config(db, ca_file=str(roots), grace=0.0, failure_threshold=1, interval=3600.0,
                 allow_networks=(ipaddress.ip_network("127.0.0.0/8"),
                                 ipaddress.ip_network("::1/128")),
                 resolve=tuple((DOMAIN, address) for address in ADDRESSES))
    with ExitStack() as stack:
        servers = _same_port(stack, *old)
        with running(cfg) as srv:
            assert srv.line_address
            hook = write_bash_hook(tmp_path / "hook.sh", srv.line_address, keys["alice"],
                                   servers[0].port, tmp_path / "answers")
            certbot.renew("--deploy-hook", str(hook))
            new = (live / "fullchain.pem").read_bytes(), (live / "privkey.pem").read_bytes()
            assert new != old
            for server in servers[:2]:
                _reload(server, *new)

            def lagging() -> dict[str, object] | None:
                rows = targets(db)
                reasons = str(rows[0]["reasons"] or "") if rows else ""
                wanted = ("renewed but not deployed on ::1 (2 of 3 addresses serve the new"
                          " certificate)")
                return dict(rows[0]) if reasons.startswith(wanted) else None

            row = wait_until(lagging, what="the per-address finding")
    assert row["status"] == "critical" and row["deployed"] == 0
    # every address was asked for the name, none was looked up
    assert all(server.snis and set(server.snis) == {DOMAIN} for server in servers)


def test_resolve_takes_several_addresses_per_name(tmp_path: Path) -> None:
    from certhook.server.config import load_config

    conf = tmp_path / "server.conf"
    conf.write_text("[audit]\nresolve = www.example.org=127.0.0.1, WWW.example.org.=[::1]\n"
                    "  www.example.org=127.0.0.2\n")
    assert load_config(conf).resolve == (
        (DOMAIN, "127.0.0.1"), (DOMAIN, "::1"), (DOMAIN, "127.0.0.2"))
