"""``certhook keys``: add, list and revoke the audit server's accounts."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default /var/lib/certhook/certhook.db)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account and print its API key (once)")
    add.add_argument("name")
    add.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    lst = sub.add_parser("list", help="list accounts")
    lst.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    rev = sub.add_parser("revoke", help="revoke an account's API key")
    rev.add_argument("name")
    rev.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sys

    from certhook.server import store
    from certhook.server.config import DEFAULT_DB
    from certhook.server.queries import iso

    db = args.db or DEFAULT_DB
    conn = store.connect(db, create=args.action == "add")
    try:
        if args.action == "add":
            key = store.add_account(conn, args.name)
            print(key)
            print(f"account {args.name} created; the key above is shown once and stored only"
                  " as a hash", file=sys.stderr)
        elif args.action == "list":
            for account in store.list_accounts(conn):
                state = f"revoked {iso(account.revoked)}" if account.revoked else "active"
                print(f"{account.name}\tcreated {iso(account.created)}\t{state}")
        else:
            if not store.revoke_account(conn, args.name):
                print(f"certhook keys: no active account {args.name!r}", file=sys.stderr)
                return 1
            print(f"account {args.name} revoked", file=sys.stderr)
    finally:
        conn.close()
    return 0
