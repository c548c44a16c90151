"""``certhook status``: the audit server's report, in the terminal.

The summary (targets per state) comes first, then one page of targets,
worst first (``--limit``, ``--page``); only the rows shown read their
history. The exit status covers every target, not just the page: 2 when
any target is not ok.
"""

from __future__ import annotations

import argparse

PAGE_DEFAULT = 50


def _limit(text: str) -> int:
    from certhook.server.queries import PAGE_MAX

    if not text.isdigit() or not 1 <= int(text[:9]) <= PAGE_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {PAGE_MAX}")
    return int(text)


def _page(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text[:9]) <= 10**8:
        raise argparse.ArgumentTypeError(f"{text!r} is not a page number")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the server's configuration file")
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default: the config's, or "
                             "/var/lib/certhook/certhook.db)")
    parser.add_argument("--account", metavar="NAME", help="only this account's targets")
    parser.add_argument("--json", action="store_true",
                        help="the page as a JSON list of targets, as GET /api/v1/domains")
    parser.add_argument("--limit", metavar="N", type=_limit, default=PAGE_DEFAULT,
                        help=f"targets per page (default {PAGE_DEFAULT})")
    parser.add_argument("--page", metavar="N", type=_page, default=1,
                        help="which page, worst targets first (default 1)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json
    import sys

    from certhook.server import queries, report, store
    from certhook.server.config import load_config

    # a bad config file is one line on stderr (certhook.cli), not a usage message
    db = load_config(args.config).with_overrides(db=args.db).db
    conn = store.open_store(db, create=False)
    try:
        counts = queries.state_counts(conn, args.account)
        if args.json:
            rows, _ = queries.report_page(conn, args.account, group="none",
                                              offset=(args.page - 1) * args.limit,
                                              limit=args.limit)
            # a list, as before pages: scripts read it; the page is worst first
            data = [{"account": r["account"], **queries.target_json(r)} for r in rows]
            json.dump(data, sys.stdout, indent=2)
            print()
        else:
            sys.stdout.write(report.render_text(conn, args.account, limit=args.limit,
                                                page=args.page))
    finally:
        conn.close()
    return 2 if any(state != "ok" and n for state, n in counts.items()) else 0
