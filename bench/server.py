"""Benchmark: acknowledged submissions per second over the line protocol.

Runs the audit server in this process (writer thread, asyncio line
listener; auditing off, since only intake is measured) on loopback, and
drives it from ``--procs`` client processes with ``--conns`` connections
each. Every connection is a closed loop: it sends one submission (unique
``id``), waits for its ``ok``, and sends the next (``--pipeline N`` sends N
before reading N answers). Latency is from send to ``ok``.

Then the floor: a bare SQLite loop in one thread doing the same durable
writes (the same INSERT of the submission and upsert of its target, the
same WAL journal and ``synchronous=FULL``, and the same number of
submissions per transaction as the server's group commit achieved on
average), plus the same loop with one transaction per submission, which is
what a server without group commit could at best do.

    .venv/bin/python bench/server.py [--seconds 5] [--procs 4] [--conns 16]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certhook.server import store
from certhook.server.committer import _INSERT_SUBMISSION, _UPSERT_TARGET
from certhook.server.config import ServerConfig
from certhook.server.runner import AuditServer


def _client(port: int, key: str, proc: int, conns: int, pipeline: int, start_at: float,
            stop_at: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import threading

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()

    def run(conn_no: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        mine: list[float] = []
        i = 0
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < stop_at:
            lines = []
            for _ in range(pipeline):
                i += 1
                lines.append(f"command add domain h{proc}-{conn_no}.example port 443 "
                             f"id p{proc}c{conn_no}n{i} client bench apikey {key}\r\n".encode())
            sent = time.perf_counter()
            sock.sendall(b"".join(lines))
            for _ in range(pipeline):
                answer = reader.readline()
                if not answer.startswith(b"ok "):
                    with lock:
                        errors[0] += 1
                mine.append(time.perf_counter() - sent)
        sock.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(c,)) for c in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((latencies, errors[0]))


def bench_server(workdir: Path, seconds: float, procs: int, conns: int, pipeline: int
                 ) -> dict[str, float]:
    db = str(workdir / "server.db")
    conn = store.connect(db)
    key = store.add_account(conn, "bench")
    conn.close()
    # Every client is on 127.0.0.1: lift the per-address limit (32) to them all.
    cfg = ServerConfig(db=db, line_listen=("127.0.0.1", 0), http_listen=None,
                       max_pending_per_connection=max(64, pipeline),
                       max_connections_per_address=max(32, procs * conns))
    server = AuditServer(cfg, audit=False).start()
    assert server.line_address
    port = server.line_address[1]
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    start_at = time.time() + 1.0
    stop_at = start_at + seconds
    workers = [multiprocessing.Process(target=_client, args=(
        port, key, p, conns, pipeline, start_at, stop_at, queue)) for p in range(procs)]
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
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.stop()
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    stored = sqlite3.connect(db).execute("SELECT count(*) FROM submissions").fetchone()[0]
    return {
        "acked": len(latencies), "errors": errors, "stored": stored,
        "rate": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else 0.0,
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "batch": committed / tx if tx else 1.0,
        "server_cpu": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
        "client_cpu": children.ru_utime + children.ru_stime,
    }


def bench_floor(workdir: Path, seconds: float, batch: int, targets: int, name: str
                ) -> dict[str, float]:
    """One thread, the server's statements and settings, ``batch`` submissions per commit.

    As the server's writer: one executemany of the batch's submissions, one
    upsert per distinct target of the batch (``targets`` hosts in turn, as
    the benchmark's connections each submit their own host).
    """
    db = workdir / f"floor-{name}.db"
    conn = store.connect(str(db))
    now = time.time()
    n = 0
    tx = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        rows = []
        hosts = {}
        for _ in range(batch):
            n += 1
            host = f"h{n % targets}.example"
            rows.append(("bench", f"f{n}", now, "line", "127.0.0.1:1", host, "443", "",
                         None, None, None, "bench"))
            hosts[host] = ("bench", host, 443, "tls", now, now, None, None, None, None, now, "",
                           None, None)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_SUBMISSION, rows)
        conn.executemany(_UPSERT_TARGET, list(hosts.values()))
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
    parser.add_argument("--pipeline", type=int, default=1,
                        help="requests in flight per connection (1: one at a time)")
    parser.add_argument("--dir", help="where the databases go (default: a temporary dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        workdir = Path(tmp)
        print(f"# {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}, Python "
              f"{sys.version.split()[0]}, WAL + synchronous=FULL, database in {workdir}")
        print(f"# {args.procs} client processes x {args.conns} connections, "
              f"{'one request at a time' if args.pipeline == 1 else f'pipeline {args.pipeline}'}"
              f" per connection, {args.seconds:.0f} s")
        srv = bench_server(workdir, args.seconds, args.procs, args.conns, args.pipeline)
        batch = max(1, round(srv["batch"]))
        hosts = args.procs * args.conns
        floor = bench_floor(workdir, args.seconds, batch, hosts, "group")
        single = bench_floor(workdir, min(args.seconds, 3.0), 1, hosts, "single")
    print(f"server   {srv['rate']:9.0f} acked/s  p50 {srv['p50_ms']:.2f} ms  "
          f"p99 {srv['p99_ms']:.2f} ms  mean batch {srv['batch']:.1f}  "
          f"errors {srv['errors']:.0f}  acked {srv['acked']:.0f} <= stored {srv['stored']:.0f}")
    per_req = 1e6 * srv["server_cpu"] / max(srv["acked"], 1)
    print(f"cpu      server {srv['server_cpu']:.1f} s ({per_req:.0f} us per submission), "
          f"clients {srv['client_cpu']:.1f} s, of {os.cpu_count()} CPUs x {args.seconds:.0f} s")
    print(f"floor    {floor['rate']:9.0f} rows/s   batch {batch}, "
          f"{floor['commit_ms']:.2f} ms per transaction (bare sqlite3 loop, same writes)")
    print(f"floor-1  {single['rate']:9.0f} rows/s   one transaction per submission "
          f"({single['commit_ms']:.2f} ms each)")
    print(f"ratio    floor / server = {floor['rate'] / srv['rate']:.2f}x   "
          f"server / floor-1 = {srv['rate'] / single['rate']:.1f}x")
    ok = srv["rate"] >= 5000 and floor["rate"] / srv["rate"] <= 2.0 and srv["errors"] == 0
    print("target   >= 5000 acked/s and within 2x the floor:", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
