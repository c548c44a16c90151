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

``read``: the read side (issue 11) at each of ``--targets`` targets. A
database of that many targets of one account, ``--results`` probe results
each (default 10, 3 from 100,000 on) and one renewal submission per lineage,
written with ``executemany`` into the schema the server's own code makes, in
a temporary directory. Then the real ``certhook serve`` (HTTP on loopback,
no auditor: no target is ever probed) answers ``GET /`` (a page of the
report), ``/target``, ``/metrics`` and the API listings (the first page, and
every page walked by its cursor), and the real ``certhook status`` runs as
a process. Each is timed (best of ``--repeat``) against a bare SQLite query
over the same rows (the floor: the sorted ``LIMIT`` for a page, the full
scan for ``/metrics`` and a walk), with the serve process's VmRSS after it
and VmHWM (from /proc), and ``status``'s own peak RSS.

    .venv/bin/python bench/server.py read [--targets 1000,10000] [--results 10]
    .venv/bin/python bench/server.py read --targets 1000,10000,100000   # the full run
    (the default takes seconds; the full run a few minutes, most of it at 100,000)
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
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from certhook.server import store
from certhook.server.config import ServerConfig
from certhook.server.runner import AuditServer
from certhook.server.store.sql import _SEVERITY_SQL
from certhook.server.store.sql_accounts import _INSERT_SUBMISSION, _UPSERT_TARGET
from certhook.server.store.sqlite import connect  # the store's own SQLite connection


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
    opened = store.open_store(db)
    key = opened.add_account("bench")
    opened.close()
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
    conn = connect(str(db))
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
                           None, None, "")  # no vantages, as the server's own upsert
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(_INSERT_SUBMISSION, rows)
        conn.executemany(_UPSERT_TARGET, list(hosts.values()))
        conn.execute("COMMIT")
        tx += 1
    elapsed = time.perf_counter() - started
    conn.close()
    return {"rate": n / elapsed, "batch": batch, "commit_ms": 1000 * elapsed / tx}


# -- the read side: status, the report page, /metrics and the API at N targets -----------

READ_STATES = ["ok"] * 90 + ["warning"] * 4 + ["critical"] * 3 + ["unknown"] * 2 + ["waiting"]


def populate(db: Path, targets: int, results: int) -> str:
    """A database of ``targets`` targets of account ``bench`` (and 100 of ``other``),
    ``results`` results each, one renewal submission per lineage; the schema is the
    server's own (``store.connect``). Returns bench's key."""
    import random

    opened = store.open_store(str(db))
    key = opened.add_account("bench")
    opened.add_account("other")
    opened.close()
    conn = connect(str(db))
    now, rng = time.time(), random.Random(1)
    rows = []
    for account, count in (("bench", targets), ("other", 100)):
        for i in range(count):
            fingerprint = f"{rng.getrandbits(256):064x}"
            state = rng.choice(READ_STATES)
            rows.append((
                account, f"t{i:06d}.example", 443, "tls", now - 90 * 86400, now - 3600,
                f"l{i // 3}", "deployed", fingerprint, now - 30 * 86400 - (i // 3) * 60, None,
                state, now - 86400, 0, now - 600, "ok" if state == "ok" else "critical",
                "" if state == "ok" else "the served certificate is not the deployed one",
                60, now + rng.random() * 90 * 86400, "CN=Bench CA", fingerprint,
                1 if state != "waiting" else 0, "127.0.0.1",
                now + 86400 if i % 50 == 0 else None))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO targets (account, domain, port, protocol, created, last_submitted,"
        " lineage, last_event, expected_fingerprint, expected_since, next_probe, state,"
        " state_since, failures, last_probe, status, reasons, days_left, not_after, issuer,"
        " served_fingerprint, deployed, address, muted_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    ids = [r[0] for r in conn.execute("SELECT id FROM targets")]
    step = 6 * 3600  # the default interval
    for start in range(0, len(ids), 10_000):
        conn.executemany(
            "INSERT INTO results (target, time, status, state, reasons, days_left, not_after,"
            " issuer, fingerprint, deployed, address, elapsed)"
            " VALUES (?, ?, 'ok', 'ok', '', 60, ?, 'CN=Bench CA', 'aa', 1, '127.0.0.1', 0.05)",
            [(t, now - k * step, now + 60 * 86400) for t in ids[start:start + 10_000]
             for k in range(results)])
    conn.executemany(_INSERT_SUBMISSION, [
        (account, f"renew-{lineage}", now - 30 * 86400 - lineage * 60, "line", "127.0.0.1:1",
         " ".join(f"t{i:06d}.example" for i in range(3 * lineage, 3 * lineage + 3)), "443",
         "tls", None, f"l{lineage}", "deployed", "certhook/bench")
        for account, count in (("bench", targets), ("other", 100))
        for lineage in range((count + 2) // 3)])
    conn.execute("COMMIT")
    conn.close()
    return key


def _proc_memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid``, in KiB, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0])
    return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, auth: str) -> tuple[float, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": auth})
    answer = conn.getresponse()
    body = answer.read()
    elapsed = time.perf_counter() - started
    conn.close()
    if answer.status != 200:
        raise SystemExit(f"GET {path}: {answer.status} {body[:200]!r}")
    return elapsed, body


def _best(call: object, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        out = call()  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    return best, out


def _best_run(argv: list[str], repeat: int) -> tuple[float, int]:
    import subprocess

    best, rss = float("inf"), 0
    for _ in range(repeat):
        seconds, _, peak = subprocess.run(argv, check=True, capture_output=True,
                                          text=True).stdout.split()
        best, rss = min(best, float(seconds)), int(peak)
    return best, rss


def _walk(port: int, path: str, auth: str, field: str) -> tuple[float, int, int]:
    """Every page of an API listing, by its ``next`` cursor: time, requests, items."""
    import json

    started = time.perf_counter()
    cursor, requests, items = None, 0, 0
    while True:
        url = path + (f"&cursor={cursor}" if cursor else "")
        _, body = _get(port, url, auth)
        data = json.loads(body)
        requests += 1
        items += len(data[field])
        cursor = data.get("next")
        if not cursor:
            return time.perf_counter() - started, requests, items


def bench_read(workdir: Path, targets: int, results: int, repeat: int) -> list[dict[str, Any]]:
    """Each read path against the real ``certhook serve`` and ``certhook status``."""
    import base64
    import subprocess


    db = workdir / f"read-{targets}.db"
    started = time.perf_counter()
    key = populate(db, targets, results)
    built = time.perf_counter() - started
    port = _free_port()
    certhook = [sys.executable, "-m", "certhook"]
    server = subprocess.Popen(
        [*certhook, "serve", "--db", str(db), "--line-listen", "off", "--http-listen",
         f"127.0.0.1:{port}", "--no-audit", "--log-level", "WARNING"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    basic = "Basic " + base64.b64encode(f"bench:{key}".encode()).decode()
    bearer = f"Bearer {key}"
    out: list[dict[str, Any]] = []
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        idle = _proc_memory(server.pid)
        floor = sqlite3.connect(str(db))
        sev = _SEVERITY_SQL

        def q(sql: str, *args: object) -> Callable[[], object]:
            return lambda: floor.execute(sql, args).fetchall()

        page_floor = q(f"SELECT * FROM targets WHERE account = ? ORDER BY {sev}, not_after"
                       " LIMIT 100", "bench")
        status_floor = q(f"SELECT * FROM targets WHERE account = ? ORDER BY {sev}, not_after"
                         " LIMIT 50", "bench")
        first_floor = q("SELECT * FROM targets WHERE account = ? ORDER BY domain, port, protocol"
                        " LIMIT 100", "bench")
        scan_floor = q("SELECT * FROM targets WHERE account = ? ORDER BY domain, port, protocol",
                       "bench")
        name_floor = q("SELECT * FROM results WHERE target = (SELECT id FROM targets WHERE"
                       " account = ? AND domain = ?) ORDER BY time DESC LIMIT 60", "bench",
                       "t000001.example")
        middle = max(1, targets // 100 // 2)
        cases: list[tuple[str, Callable[[], float], Callable[[], object]]] = [
            ("GET / (page 1)", lambda: _get(port, "/", basic)[0], page_floor),
            (f"GET /?page={middle}", lambda: _get(port, f"/?page={middle}", basic)[0],
             q(f"SELECT * FROM targets WHERE account = ? ORDER BY {sev}, not_after"
               " LIMIT 100 OFFSET ?", "bench", (middle - 1) * 100)),
            ("GET /target?id=2", lambda: _get(port, "/target?id=2", basic)[0], name_floor),
            ("GET /api/v1/domains", lambda: _get(port, "/api/v1/domains", bearer)[0],
             first_floor),
            ("GET /api/v1/domains/NAME", lambda: _get(
                port, "/api/v1/domains/t000001.example", bearer)[0], name_floor),
            ("GET /api/v1/targets", lambda: _get(port, "/api/v1/targets", bearer)[0],
             first_floor),
            ("GET /metrics", lambda: _get(port, "/metrics", bearer)[0], scan_floor),
        ]
        for name, call, bare in cases:
            seconds, _ = _best(call, repeat)
            floor_s, _ = _best(bare, repeat)
            out.append({"what": name, "s": seconds, "floor": floor_s,
                        **_proc_memory(server.pid)})
        for path, field in (("/api/v1/domains?limit=1000", "domains"),
                            ("/api/v1/targets?limit=1000", "targets")):
            seconds, requests, items = _walk(port, path, bearer, field)
            floor_s, _ = _best(scan_floor, 1)
            if items != targets:
                raise SystemExit(f"{path}: walked {items} targets of {targets}")
            out.append({"what": f"walk {path.split('?')[0]} ({requests} pages)", "s": seconds,
                        "floor": floor_s, **_proc_memory(server.pid)})

        # ``certhook status`` is started by a small go-between that reports its time and
        # peak RSS: a child forked from this process (which holds the whole database it
        # just built) would count this process's pages in its own ru_maxrss.
        between = ("import os, subprocess, sys, time\n"
                   "t = time.perf_counter()\n"
                   "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
                   "_, code, use = os.wait4(p.pid, 0)\n"
                   "print(time.perf_counter() - t, os.waitstatus_to_exitcode(code), use.ru_maxrss)")

        def status() -> tuple[float, int]:
            answer = subprocess.run(
                [sys.executable, "-c", between, *certhook, "status", "--db", str(db),
                 "--account", "bench"], check=True, capture_output=True, text=True)
            seconds, code, rss = answer.stdout.split()
            if int(code) not in (0, 2):
                raise SystemExit(f"certhook status failed: {answer.stderr[:300]}")
            return float(seconds), int(rss)

        best, rss = float("inf"), 0
        for _ in range(repeat):
            seconds, rss = status()
            best = min(best, seconds)
        floor_s, _ = _best(status_floor, repeat)
        out.append({"what": "certhook status (a process)", "s": best, "floor": floor_s,
                    "VmHWM": rss, "VmRSS": rss})
        floor.close()
        seconds, rss = _best_run([sys.executable, "-c", between, *certhook, "--help"], repeat)
        out.append({"what": "  of which: certhook --help (no database)", "s": seconds,
                    "floor": 0.0, "VmHWM": rss, "VmRSS": rss})
        out.append({"what": "server idle after start", "s": 0.0, "floor": 0.0, **idle})
        out[0]["built"] = built
    finally:
        server.terminate()
        server.wait(30)
        if server.stderr is not None:
            errors = server.stderr.read().decode("utf-8", "replace").strip()
            server.stderr.close()
            if errors:
                print(f"# server stderr: {errors[:500]}")
    return out


def main_read(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/server.py read",
                                     description="the read side at many targets")
    parser.add_argument("--targets", default="1000,10000",
                        help="comma-separated target counts (default 1000,10000; the full"
                             " run: 1000,10000,100000)")
    parser.add_argument("--results", type=int, default=None,
                        help="probe results per target (default 10, 3 from 100,000 targets)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    parser.add_argument("--dir", help="where the databases go (default: a temporary dir)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.targets.split(",") if x.strip()]
    print(f"# {os.cpu_count()} CPUs, SQLite {sqlite3.sqlite_version}, Python "
          f"{sys.version.split()[0]}; times are the best of {args.repeat}")
    for count in counts:
        results = args.results if args.results is not None else (10 if count < 100_000 else 3)
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            rows = bench_read(Path(tmp), count, results, args.repeat)
        print(f"\n## {count:,} targets, {results} results each (database built in"
              f" {rows[0]['built']:.2f} s)")
        print(f"{'':<42} {'time':>9} {'floor':>9} {'ratio':>7} {'VmRSS':>9} {'VmHWM':>9}")
        for row in rows:
            ratio = f"{row['s'] / row['floor']:6.1f}x" if row["floor"] else ""
            times = (f"{row['s'] * 1000:7.1f}ms {row['floor'] * 1000:7.2f}ms" if row["s"]
                     else f"{'':>9} {'':>9}")
            print(f"{row['what']:<42} {times} {ratio:>7} {row['VmRSS'] / 1024:6.1f}MiB"
                  f" {row['VmHWM'] / 1024:6.1f}MiB")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["read"]:
        return main_read(sys.argv[2:])
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
