"""``certhook targets``: list, remove, mute and unmute the audit server's targets."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", help="the server's configuration file")
    common.add_argument("--db", metavar="PATH",
                        help="SQLite database (default: the config's, or "
                             "/var/lib/certhook/certhook.db)")
    common.add_argument("--account", metavar="NAME",
                        help="only this account's targets (default: every account's)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", parents=[common],
                         help="list targets: state, last submission, muted until")
    lst.add_argument("--muted", action="store_true", help="only muted targets")
    lst.add_argument("--json", action="store_true", help="JSON, as GET /api/v1/targets")
    rm = sub.add_parser("rm", parents=[common],
                        help="remove targets and their history (a submission naming one"
                             " adds it back)")
    mute = sub.add_parser("mute", parents=[common],
                          help="no notices for targets until a time (still probed and shown)")
    mute.add_argument("--until", required=True, metavar="WHEN",
                      help="a time (2026-12-24T00:00Z; UTC unless a zone is given) or a"
                           " duration (30m, 12h, 2d, 1w)")
    unmute = sub.add_parser("unmute", parents=[common], help="notify for targets again")
    for each in (rm, mute, unmute):
        each.add_argument("target", metavar="TARGET",
                          help="HOST:PORT[/PROTOCOL], or a name (all its ports)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json
    import sys
    import time

    from certhook.errors import ParseError
    from certhook.server import store, targets
    from certhook.server.config import load_config
    from certhook.server.queries import iso
    from certhook.server.recheck import parse_selector

    now = time.time()
    try:
        selector = parse_selector(args.target) if args.action != "list" else None
        until = targets.parse_until(args.until, now) if args.action == "mute" else None
    except ParseError as exc:
        parser.error(str(exc))
    db = store.open_store(load_config(args.config).with_overrides(db=args.db).db, create=False)
    try:
        if selector is None:
            rows = [r for r in db.list_targets(args.account)
                    if not args.muted or targets.muted(r, now)]
            if args.json:
                json.dump([{"account": r.account, **targets.target_json(r, now)}
                           for r in rows], sys.stdout, indent=2)
                print()
            for row in [] if args.json else rows:
                mute = f"\tmuted until {iso(row.muted_until)}" if targets.muted(row, now) else ""
                print(f"{targets.label(row)}\t{row.state}"
                      f"\tsubmitted {iso(row.last_submitted)}{mute}")
            return 0
        rows = db.find_targets(args.account, selector.domain, selector.port,
                                   selector.protocol)
        if not rows:
            scope = f" of account {args.account}" if args.account else ""
            print(f"certhook targets: no target {selector}{scope}", file=sys.stderr)
            return 1
        if args.action == "rm":
            db.remove_targets([r.id for r in rows])
            done = "removed (a submission naming it adds it back)"
        elif args.action == "mute":
            db.mute_targets([r.id for r in rows], until)
            done = f"muted until {iso(until)} (still probed and shown; no notices)"
        else:
            db.mute_targets([r.id for r in rows], None)
            done = "unmuted"
        for row in rows:
            print(f"{targets.label(row)}: {done}")
    finally:
        db.close()
    return 0
