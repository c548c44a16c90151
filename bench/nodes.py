"""Benchmark: audit throughput with 1, 2 and 3 ``certhook serve`` nodes on one database.

For each node count: a fresh SQLite database, that many real ``certhook
serve`` processes on it, ``--targets`` names ``tN.nodes.test`` (all sent to
127.0.0.1 by ``[audit] resolve``) on one loopback TLS server (a wildcard
certificate from a trustme CA, served from this process, one thread per
connection). The targets are submitted with a first probe an hour away,
then all marked due at once (``certhook recheck --all``); the time is from
there to the last target's first result, read from the database.

With ``--vantages``, node i carries ``[audit] vantage = vI`` and the account
names every node's vantage: each target is probed once from each node, and
the time runs to the last vantage's first result. The same number of
probes without vantages (``--targets`` times the nodes, plain) is the
reference: the difference is what recording per vantage costs (reading and
locking the target's vantage rows, the merge).

Stated honestly: the TLS server, the probes and the database share this
machine's cores (two here), so more nodes show what the claims cost and
whether nodes get in each other's way, not how far the design scales on
more machines (see docs/scaling.md).

    .venv/bin/python bench/nodes.py [--targets 1000] [--nodes 1,2,3] [--concurrency 16]
                                    [--vantages]
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import trustme  # noqa: E402
from server_helpers import ServeProcess, ThreadedTlsServer, submit_names  # noqa: E402

from certhook.server import store  # noqa: E402
from certhook.server.store.sqlite import connect  # noqa: E402


def _probed(db: str, after: float, vantages: bool) -> int:
    """Targets (or, with vantages, vantage rows) with a result after ``after``: one count
    query, so that watching costs the machine next to nothing."""
    conn = connect(db, create=False)
    try:
        sql = ("SELECT count(*) FROM vantages WHERE time > ?" if vantages else
               "SELECT count(*) FROM targets WHERE last_probe > ?")
        return int(conn.execute(sql, (after,)).fetchone()[0])
    finally:
        conn.close()


def run(targets: int, nodes: int, concurrency: int, tls: ThreadedTlsServer, ca_file: str,
        vantages: bool = False) -> tuple[float, int]:
    """Seconds from ``recheck --all`` to every target probed (from every vantage), and the
    handshakes made."""
    names = [f"t{i}.nodes.test" for i in range(targets)]
    audit = (f"allow_networks = 127.0.0.0/8\nca_file = {ca_file}\ninterval = 6h\n"
             f"first_probe_delay = 1h\nconcurrency = {concurrency}\n"
             f"resolve = {', '.join(f'{n}=127.0.0.1' for n in names)}\n")
    places = [f"v{i}" for i in range(nodes)] if vantages else []
    extra = f"[account bench]\nvantages = {', '.join(places)}\n" if vantages else ""
    with tempfile.TemporaryDirectory(prefix="certhook-nodes-") as tmp:
        db = os.path.join(tmp, "certhook.db")
        opened = store.open_store(db)
        key = opened.add_account("bench")
        opened.close()
        started: list[ServeProcess] = []
        try:
            for i in range(nodes):
                home = Path(tmp) / f"node{i}"
                home.mkdir()
                mine = f"vantage = {places[i]}\n" if vantages else ""
                started.append(ServeProcess(home, db, audit + mine, extra))
            submit_names(started[0].line_address, key, names, tls.port, chunk=20)
            before = tls.handshakes
            code, out, err = started[0].cli("recheck", "--all")
            if code != 0:
                raise SystemExit(f"recheck failed: {out}{err}")
            t0 = time.time()
            while _probed(db, t0 - 1, vantages) < targets * max(1, len(places)):
                time.sleep(0.2)
            return time.time() - t0, tls.handshakes - before
        finally:
            for node in started:
                node.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--vantages", action="store_true",
                        help="each node a vantage, each target probed from every one")
    args = parser.parse_args(argv)
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("*.nodes.test").configure_cert(context)
    tls = ThreadedTlsServer(context)
    try:
        with tempfile.NamedTemporaryFile(suffix=".pem") as ca_file:
            ca.cert_pem.write_to_path(ca_file.name)
            print(f"{args.targets} targets, concurrency {args.concurrency} per node,"
                  f" {os.cpu_count()} cores")
            for n in (int(x) for x in args.nodes.split(",")):
                seconds, handshakes = run(args.targets, n, args.concurrency, tls, ca_file.name,
                                          args.vantages)
                probes = args.targets * (n if args.vantages else 1)
                kind = f", {n} vantage(s)" if args.vantages else ""
                print(f"{n} node(s){kind}: {seconds:6.2f} s, {probes / seconds:7.1f} probes/s,"
                      f" {handshakes} handshakes", flush=True)
    finally:
        tls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
