"""Benchmark: the report page and ``certhook status`` at many targets.

Builds a throwaway database of ``--targets`` targets of one account (every
third sharing a lineage, states mostly ok) with ``--results`` results each,
then renders pages of the report in this process (as ``GET /`` does, less
the HTTP), the text of ``certhook status``, and, as the floor, the bare
SQLite query that sorts the same rows worst first. Prints seconds per
render and the process's peak RSS.

    .venv/bin/python bench/report.py [--targets 100000] [--results 3]
"""

from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from pathlib import Path

from certhook.server import report, store
from certhook.server.store.sql import _SEVERITY_SQL
from certhook.server.store.sqlite import connect

STATES = ["ok"] * 90 + ["warning"] * 4 + ["critical"] * 3 + ["unknown"] * 2 + ["waiting"]


def build(db: Path, targets: int, results: int) -> None:
    conn = connect(db)
    now, rng = time.time(), random.Random(1)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO targets (account, domain, port, protocol, created, last_submitted, state,"
        " lineage, not_after, served_fingerprint, expected_fingerprint, last_probe)"
        " VALUES ('alice', ?, 443, 'tls', 0, 0, ?, ?, ?, 'aa', 'aa', ?)",
        [(f"t{i:06d}.example", rng.choice(STATES), f"l{i // 3}",
          now + rng.random() * 90 * 86400, now) for i in range(targets)])
    conn.executemany(
        "INSERT INTO results (target, time, status, state, reasons, days_left, not_after,"
        " fingerprint) VALUES (?, ?, 'ok', 'ok', '', 50, ?, 'aa')",
        [(t, now - k * 3600, now + 50 * 86400) for t in range(1, targets + 1)
         for k in range(results)])
    conn.execute("COMMIT")
    conn.close()


def _time(what: str, call: object) -> None:
    start = time.perf_counter()
    out = call()  # type: ignore[operator]
    size = len(out) if isinstance(out, str) else len(out.fetchall())
    print(f"{what:<40} {time.perf_counter() - start:7.3f} s  {size:>8}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--targets", type=int, default=100_000)
    parser.add_argument("--results", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "report.db"
        build(db, args.targets, args.results)
        conn = connect(db, create=False)
        opened = store.open_store(str(db), create=False)
        last = max(1, args.targets // report.PAGE_SIZE)
        for params in ({}, {"page": str(last // 2)}, {"group": "host"}, {"group": "none"},
                       {"state": "critical"}, {"q": "t0999"}):
            _time(f"page {params}", lambda p=params: report.render_page(opened, "alice", p))
        _time("certhook status (text)", lambda: report.render_text(opened, None, limit=50))
        _time("floor: bare sorted query, 100 rows", lambda: conn.execute(
            f"SELECT * FROM targets WHERE account = 'alice' ORDER BY {_SEVERITY_SQL},"
            " not_after LIMIT 100"))
        opened.close()
        conn.close()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print(f"peak RSS {rss} MiB (building the database included)")


if __name__ == "__main__":
    main()
