"""``certhook status``: the audit server's report, in the terminal."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the server's configuration file")
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default: the config's, or "
                             "/var/lib/certhook/certhook.db)")
    parser.add_argument("--account", metavar="NAME", help="only this account's targets")
    parser.add_argument("--json", action="store_true", help="JSON, as GET /api/v1/domains")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json
    import sys

    from certhook.server import queries, report, store
    from certhook.server.config import load_config

    # a bad config file is one line on stderr (certhook.cli), not a usage message
    db = load_config(args.config).with_overrides(db=args.db).db
    conn = store.connect(db, create=False)
    try:
        if args.json:
            rows = queries.account_targets(conn, args.account)
            data = [{"account": r["account"], **queries.target_json(r)} for r in rows]
            json.dump(data, sys.stdout, indent=2)
            print()
            bad = any(r["state"] != "ok" for r in rows)
        else:
            sys.stdout.write(report.render_text(conn, args.account))
            bad = any(r["state"] != "ok" for r in queries.account_targets(conn, args.account))
    finally:
        conn.close()
    return 2 if bad else 0
