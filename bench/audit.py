"""Benchmark: the healthy targets' audit time when some targets are tarpits.

A tarpit accepts a connection and never says a word: without care, each one
holds a probe thread for the whole ``probe_timeout`` (issue 9.12: 10 % of
1,000 targets took the healthy ones' audit from 4 s to 66 s).

For each tarpit share: a fresh database and the audit server in this
process (the real auditor and probe; the line listener on loopback), the
healthy names ``hN.bench.test`` on a real TLS server (a wildcard
certificate from a trustme CA) and the tarpit names ``tN.bench.test`` on
an accept-and-silent socket, every name sent to 127.0.0.1 by ``[audit]
resolve`` (127.0.0.0/8 allowed). The tarpits are submitted first, so they
head the queue: the worst case.

* round 1, first contact: from the last submission's ``ok`` to the last
  healthy target's first result (the tarpits are not known yet);
* round 2, steady state: every target marked due (``certhook recheck
  --all``), until every healthy target has a new result.

    .venv/bin/python bench/audit.py [--targets 1000] [--shares 0,10,50]
                                    [--concurrency 16] [--timeout 10]
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import ssl
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import trustme  # noqa: E402
from server_helpers import Tarpit, ThreadedTlsServer, new_db, submit_names  # noqa: E402

from certhook.server import recheck, store  # noqa: E402
from certhook.server.config import ServerConfig  # noqa: E402
from certhook.server.runner import AuditServer  # noqa: E402
from certhook.server.store.sqlite import connect  # noqa: E402


def _healthy_done(db: str, after: float) -> int:
    conn = connect(db, create=False)
    try:
        return int(conn.execute(
            "SELECT count(*) FROM targets WHERE domain LIKE 'h%' AND last_probe > ?", (after,)
        ).fetchone()[0])
    finally:
        conn.close()


def _wait_healthy(db: str, healthy: int, after: float, limit: float) -> float:
    start = time.monotonic()
    while _healthy_done(db, after) < healthy:
        if time.monotonic() - start > limit:
            return float("nan")
        time.sleep(0.05)
    return time.monotonic() - start


def run_share(share: int, total: int, concurrency: int, timeout: float, ca: trustme.CA,
              work: Path) -> tuple[int, float, float, int]:
    tarpits = total * share // 100
    healthy = total - tarpits
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("*.bench.test").configure_cert(context)
    tls, pit = ThreadedTlsServer(context), Tarpit()
    names_h = [f"h{i}.bench.test" for i in range(healthy)]
    names_t = [f"t{i}.bench.test" for i in range(tarpits)]
    ca_file = work / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    case = work / f"share-{share}"
    case.mkdir()
    db, keys = new_db(case, "bench")
    config = replace(
        ServerConfig(db=db, line_listen=("127.0.0.1", 0), http_listen=None),
        concurrency=concurrency, probe_timeout=timeout, interval=6 * 3600.0,
        allow_networks=(ipaddress.ip_network("127.0.0.0/8"),), ca_file=str(ca_file),
        resolve=tuple((name, "127.0.0.1") for name in names_h + names_t),
    )
    server = AuditServer(config).start()
    try:
        assert server.line_address is not None
        submit_names(server.line_address, keys["bench"], names_t, pit.port)
        submit_names(server.line_address, keys["bench"], names_h, tls.port)
        first = _wait_healthy(db, healthy, 0.0, 600)
        opened = store.open_store(db, create=False)
        marked = time.time()
        recheck.mark_due(opened, None, None, marked)
        opened.close()
        if server.auditor is not None:  # not the 2 s poll: the audit itself is measured
            server.auditor.wake()
        second = _wait_healthy(db, healthy, marked, 600)
        demotions = getattr(server.auditor, "moved", 0)  # 0 for an auditor with one lane
    finally:
        pit.close()  # the probes stuck on it fail at once
        server.stop()
        tls.close()
    return healthy, first, second, demotions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--shares", default="0,10,50", help="tarpit shares, per cent")
    parser.add_argument("--concurrency", type=int, default=ServerConfig.concurrency)
    parser.add_argument("--timeout", type=float, default=ServerConfig.probe_timeout)
    args = parser.parse_args()
    ca = trustme.CA()
    print(f"{args.targets} targets, concurrency {args.concurrency}, probe_timeout"
          f" {args.timeout:g} s, {os.cpu_count()} CPUs")
    print("tarpits  healthy  round 1 (first contact)  round 2 (steady)  moved to slow lane")
    with tempfile.TemporaryDirectory() as tmp:
        for share in (int(s) for s in args.shares.split(",")):
            healthy, first, second, demotions = run_share(
                share, args.targets, args.concurrency, args.timeout, ca, Path(tmp))
            print(f"{share:>6} %  {healthy:>7}  {first:>21.1f} s  {second:>14.1f} s"
                  f"  {demotions:>18}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
