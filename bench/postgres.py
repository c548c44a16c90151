"""Benchmark: durable acknowledged submissions per second on PostgreSQL, against its floor.

Starts a PostgreSQL cluster of its own on loopback (Debian's binaries, as
the tests do: tests/pg.py) with ``fsync=on`` and ``synchronous_commit=on``:
a commit returns when its WAL is flushed. Then, as ``bench/server.py`` does
for SQLite: the audit server in this process (writer thread, asyncio line
listener, auditing off), ``db = postgresql://...``, driven from ``--procs``
client processes with ``--conns`` connections each, every connection a
closed loop (one submission, wait for ``ok``, the next).

The floor: a bare psycopg loop in one thread doing the same durable writes
(the store's own INSERT of the submissions and upsert of their targets,
with the same number of submissions per transaction as the server's group
commit achieved on average), and the same loop with one transaction per
submission. The ratio floor / server is what the server costs over the
database itself.

    .venv/bin/python bench/postgres.py [--seconds 5] [--procs 4] [--conns 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/pg.py
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/server.py

from server import _client  # bench/server.py's closed-loop line clients

from certhook.server import store
from certhook.server.config import ServerConfig
from certhook.server.runner import AuditServer
from certhook.server.store import dburl, pg
from certhook.server.store.sql_accounts import _INSERT_SUBMISSION, _UPSERT_TARGET


def bench_server(url: str, seconds: float, procs: int, conns: int) -> dict[str, float]:
    opened = store.open_store(url)
    key = opened.add_account("bench")
    opened.close()
    cfg = ServerConfig(db=url, line_listen=("127.0.0.1", 0), http_listen=None,
                       max_connections_per_address=max(32, procs * conns))
    server = AuditServer(cfg, audit=False).start()
    assert server.line_address
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 1.0
    stop_at = start_at + seconds
    workers = [multiprocessing.Process(target=_client, args=(
        server.line_address[1], key, p, conns, 1, start_at, stop_at, queue))
        for p in range(procs)]
    for w in workers:
        w.start()
    time.sleep(max(0.0, start_at - time.time()))
    committed0, tx0 = server.committer.committed, server.committer.transactions
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    time.sleep(seconds)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    committed, tx = server.committer.committed - committed0, server.committer.transactions - tx0
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    server.stop()
    latencies = sorted(x for lat, _ in results for x in lat)
    opened = store.open_store(url, create=False)
    stored = len(opened.submissions())
    opened.close()
    return {
        "acked": len(latencies), "errors": sum(e for _, e in results), "stored": stored,
        "rate": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "batch": committed / tx if tx else 1.0,
        "server_cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
    }


def bench_floor(url: str, seconds: float, batch: int, targets: int) -> dict[str, float]:
    """One thread, psycopg, the store's statements, ``batch`` submissions per commit."""
    store.open_store(url).close()  # the schema
    conn: Any = pg.connect(dburl.parse(url))  # type: ignore[arg-type]
    conn.execute("SET synchronous_commit = on")
    insert, upsert = pg.to_pyformat(_INSERT_SUBMISSION), pg.to_pyformat(_UPSERT_TARGET)
    now = time.time()
    n = tx = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        rows, hosts = [], {}
        for _ in range(batch):
            n += 1
            host = f"h{n % targets}.example"
            rows.append(("floor", f"f{batch}-{n}", now, "line", "127.0.0.1:1", host, "443",
                         "", None, None, None, "bench"))
            hosts[host] = ("floor", host, 443, "tls", now, now, None, None, None, None, now,
                           "", None, None, "")  # no vantages, as the server's own upsert
        conn.execute("BEGIN")
        with conn.cursor() as cur:
            cur.executemany(insert, rows)
            cur.executemany(upsert, [hosts[h] for h in sorted(hosts)])
        conn.execute("COMMIT")
        tx += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return {"rate": n / elapsed, "batch": batch, "commit_ms": 1000 * elapsed / tx}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--conns", type=int, default=16, help="connections per process")
    args = parser.parse_args()
    from pg import Cluster
    from realservers import workdir

    with workdir("certhook-bench-pg-") as root:
        home = root / "cluster"
        home.mkdir()
        cluster = Cluster(home)
        cluster.fsync = True
        cluster.start()
        try:
            cluster.admin(f"CREATE ROLE {cluster.user} LOGIN CREATEDB"
                          f" PASSWORD '{cluster.password}'")
            version = cluster.admin("SHOW server_version")[0][0]
            print(f"# {os.cpu_count()} CPUs, PostgreSQL {version} on loopback (fsync=on,"
                  f" synchronous_commit=on), Python {sys.version.split()[0]}")
            print(f"# {args.procs} client processes x {args.conns} connections, one request"
                  f" at a time per connection, {args.seconds:.0f} s")
            srv = bench_server(cluster.create_database(), args.seconds, args.procs,
                               args.conns)
            batch = max(1, round(srv["batch"]))
            hosts = args.procs * args.conns
            floor = bench_floor(cluster.create_database(), args.seconds, batch, hosts)
            single = bench_floor(cluster.create_database(), min(args.seconds, 3.0), 1, hosts)
        finally:
            cluster.stop()
    print(f"server   {srv['rate']:9.0f} acked/s  p50 {srv['p50_ms']:.2f} ms  "
          f"p99 {srv['p99_ms']:.2f} ms  mean batch {srv['batch']:.1f}  "
          f"errors {srv['errors']:.0f}  acked {srv['acked']:.0f} <= stored {srv['stored']:.0f}")
    per_req = 1e6 * srv["server_cpu"] / max(srv["acked"], 1)
    print(f"cpu      server {srv['server_cpu']:.1f} s ({per_req:.0f} us per submission)")
    print(f"floor    {floor['rate']:9.0f} rows/s   batch {batch}, "
          f"{floor['commit_ms']:.2f} ms per transaction (bare psycopg loop, same writes)")
    print(f"floor-1  {single['rate']:9.0f} rows/s   one transaction per submission "
          f"({single['commit_ms']:.2f} ms each)")
    print(f"ratio    floor / server = {floor['rate'] / srv['rate']:.2f}x   "
          f"server / floor-1 = {srv['rate'] / single['rate']:.1f}x")
    return 0 if srv["errors"] == 0 and srv["acked"] <= srv["stored"] else 1


if __name__ == "__main__":
    sys.exit(main())
