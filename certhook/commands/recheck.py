"""``certhook recheck``: have the audit server probe targets now, not at their next turn."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certhook.server.store import Store, Target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="TARGET",
                        help="HOST:PORT[/PROTOCOL], or a name (all its ports)")
    parser.add_argument("--all", action="store_true",
                        help="every target (of --account, if given)")
    parser.add_argument("--account", metavar="NAME", help="only this account's targets")
    parser.add_argument("--config", metavar="FILE", help="the server's configuration file")
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default: the config's, or "
                             "/var/lib/certhook/certhook.db)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the probes and print their results (exit 0 when all ok,"
                             " 2 otherwise)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="how long --wait waits (default: three probe timeouts and a bit)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sys
    import time

    from certhook.errors import ParseError
    from certhook.server import recheck, store
    from certhook.server.audit import POLL
    from certhook.server.config import load_config

    if bool(args.target) == bool(args.all):
        parser.error("name one TARGET, or --all")
    try:
        selector = recheck.parse_selector(args.target) if args.target else None
    except ParseError as exc:
        parser.error(str(exc))
    config = load_config(args.config).with_overrides(db=args.db)
    db = store.open_store(config.db, create=False)
    try:
        asked = time.time()
        rows = recheck.mark_due(db, args.account, selector, asked)
        if not rows:
            what = f"{selector}" if selector else "any target"
            scope = f" of account {args.account}" if args.account else ""
            print(f"certhook recheck: no {what}{scope} to probe (wildcards never are)",
                  file=sys.stderr)
            return 1
        if not args.wait:
            for row in rows:
                print(f"{_label(row)}: recheck requested")
            return 0
        timeout = args.timeout or 3 * config.probe_timeout + 2 * POLL + 5
        ids = [row.id for row in rows]
        deadline = time.monotonic() + timeout
        while True:
            finished = recheck.done(db, ids, asked)
            if len(finished) == len(ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        return _print_results(db, rows, set(finished), timeout)
    finally:
        db.close()


def _label(row: Target) -> str:
    return _clean(f"{row.account} {row.domain}:{row.port}/{row.protocol}")


def _clean(text: str) -> str:
    """Control characters (from a certificate or a client) as escapes, for the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _print_results(db: Store, rows: list[Target], finished: set[int],
                   timeout: float) -> int:
    """One line per target (and its reasons); 1 if some did not finish, 2 if some not ok."""
    import sys

    late = bad = False
    for row in rows:
        target_id = row.id
        if target_id not in finished:
            print(f"{_label(row)}: no result within {timeout:g} s")
            late = True
            continue
        now = db.target(target_id)
        if now is None:  # removed meanwhile ('certhook targets remove', retirement)
            print(f"{_label(row)}: removed")
            bad = True
            continue
        days = "" if now.days_left is None else f", {now.days_left} days left"
        print(f"{_label(row)}: {now.state} (probe {now.status}{days})")
        for reason in (now.reasons or "").split("\n"):
            if reason:
                print(f"  {_clean(reason)}")
        bad = bad or now.state != "ok"
    if late:
        print("certhook recheck: some probes did not finish in time (is 'certhook serve'"
              " running on this database, with auditing?)", file=sys.stderr)
        return 1
    return 2 if bad else 0
