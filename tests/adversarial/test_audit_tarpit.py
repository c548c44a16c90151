"""Tarpits cannot starve the auditor (issue 9.12), with real sockets on loopback.

Forty healthy names on a real TLS server and ten tarpit names (20 %) on a
socket that accepts and never answers, all sent to 127.0.0.1 by ``[audit]
resolve``; the tarpits are submitted first, so they head the queue; two
fast slots, a 30 s probe timeout. One lane of two threads (before the fix)
reached the healthy targets only after the tarpits: 10 x 30 s / 2 = 150 s,
300 s serially. The bound, 40 s, is far from both; on a quiet 2-core
machine it took 2.7 s (first contact) and 2.2 s (known tarpits; the
auditor's 2 s poll for due targets included).
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from pathlib import Path

import trustme
from server_helpers import (
    Tarpit,
    ThreadedTlsServer,
    config,
    count,
    new_db,
    running,
    submit_names,
    wait_until,
)

from certhook.server import store
from certhook.server.recheck import mark_due

BOUND = 40.0


def _healthy_done(db: str, after: float) -> int:
    return count(db, "targets", domain=lambda d: d.startswith("h"),
                 last_probe=lambda v: v is not None and v > after)


def test_tarpits_do_not_delay_the_healthy_targets(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("*.tarpit.test").configure_cert(context)
    healthy = [f"h{i}.tarpit.test" for i in range(40)]
    pits = [f"t{i}.tarpit.test" for i in range(10)]
    tls, pit = ThreadedTlsServer(context), Tarpit()
    db, keys = new_db(tmp_path, "mallory")
    cfg = config(db, concurrency=2, probe_timeout=30.0, interval=3600.0, retry_interval=3600.0,
                 allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), ca_file=str(ca_file),
                 resolve=tuple((name, "127.0.0.1") for name in healthy + pits))
    with running(cfg) as srv:
        try:
            assert srv.line_address and srv.auditor
            submit_names(srv.line_address, keys["mallory"], pits, pit.port)
            submit_names(srv.line_address, keys["mallory"], healthy, tls.port)
            started = time.monotonic()
            wait_until(lambda: _healthy_done(db, 0.0) == len(healthy), timeout=BOUND,
                       what="the healthy targets' first audit")
            first = time.monotonic() - started
            wait_until(lambda: len(pit.held) == len(pits), what="every tarpit connected to")
            assert srv.auditor.moved >= len(pits)

            # steady state: every target due again; the tarpits, known slow now (or
            # still held from the first round), stay out of the fast lane
            conn = store.open_store(db, create=False)
            marked = time.time()
            mark_due(conn, None, None, marked)
            conn.close()
            started = time.monotonic()
            wait_until(lambda: _healthy_done(db, marked) == len(healthy), timeout=BOUND,
                       what="the healthy targets' second audit")
            second = time.monotonic() - started
            print(f"healthy targets audited in {first:.1f} s, then {second:.1f} s"
                  f" (bound {BOUND:g} s)")
            assert count(db, "targets", domain=lambda d: d.startswith("h"),
                             state="ok") == len(healthy)
        finally:
            pit.close()  # before the server stops: the probes stuck on it end at once
            tls.close()
