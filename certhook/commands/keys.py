"""``certhook keys``: add, list, rotate and revoke the audit server's accounts.

No command prints a stored key: the database holds only their hashes. A
key is printed once, on stdout, when it is issued (``add``, ``rotate``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from certhook.server import store

DEFAULT_OVERLAP = "7d"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the server's configuration file")
    parser.add_argument("--db", metavar="PATH",
                        help="SQLite database (default: the config's, or "
                             "/var/lib/certhook/certhook.db)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = sub.add_parser("add", help="create an account and print its API key (once)")
    add.add_argument("name")
    lst = sub.add_parser("list", help="list accounts, key ages and last use (never a key)")
    rot = sub.add_parser("rotate", help="issue a new key; the old one keeps working for"
                                        " --overlap, then is refused")
    rot.add_argument("name")
    rot.add_argument("--overlap", metavar="DURATION", default=DEFAULT_OVERLAP,
                     help=f"how long the old key keeps working (default {DEFAULT_OVERLAP};"
                          " 0 refuses it at once)")
    rev = sub.add_parser("revoke", help="revoke an account's API keys")
    rev.add_argument("name")
    for each in (add, lst, rot, rev):  # also accepted after the action
        each.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                          help=argparse.SUPPRESS)
        each.add_argument("--db", metavar="PATH", default=argparse.SUPPRESS,
                          help=argparse.SUPPRESS)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sys
    import time

    from certhook.errors import UsageError
    from certhook.server import store
    from certhook.server.config import load_config, parse_duration

    overlap = 0.0
    if args.action == "rotate":
        try:
            overlap = 0.0 if args.overlap.strip() == "0" else parse_duration(args.overlap)
        except UsageError as exc:
            parser.error(f"--overlap: {exc}")
    db = load_config(args.config).with_overrides(db=args.db).db
    conn = store.open_store(db, create=args.action in ("add", "rotate"))
    try:
        if args.action == "add":
            key = conn.add_account(args.name)
            print(key)
            print(f"account {args.name} created; the key above is shown once and stored only"
                  " as a hash", file=sys.stderr)
        elif args.action == "rotate":
            now = time.time()
            key, until = conn.rotate_key(args.name, overlap, now)
            print(key)
            old = (f"the old key works until {_iso(until)}, then is refused"
                   if until is not None else "the old key is refused from now on")
            print(f"account {args.name}: new key above, shown once and stored only as a hash;"
                  f" {old}", file=sys.stderr)
        elif args.action == "list":
            for line in list_lines(conn.list_accounts(), time.time()):
                print(line)
        else:
            if not conn.revoke_account(args.name):
                print(f"certhook keys: no active account {args.name!r}", file=sys.stderr)
                return 1
            print(f"account {args.name} revoked", file=sys.stderr)
    finally:
        conn.close()
    return 0


def list_lines(accounts: list[store.Account], now: float) -> list[str]:
    """One tab-separated line per account: name, state, key age, last use, old key."""
    lines = []
    for account in accounts:
        state = f"revoked {_iso(account.revoked)}" if account.revoked else "active"
        issued = account.key_created or account.created
        used = f"used {_iso(account.last_used)}" if account.last_used else "never used"
        fields = [account.name, state, f"key {_age(now - issued)} old", used]
        if account.old_key_expires is not None and account.old_key_expires > now:
            old_used = (f"used {_iso(account.old_last_used)}" if account.old_last_used
                        else "never used")
            fields.append(f"old key until {_iso(account.old_key_expires)} ({old_used})")
        lines.append("\t".join(fields))
    return lines


def _iso(when: float) -> str:
    from certhook.server.queries import iso

    return iso(when) or ""


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))} min"
    if seconds < 2 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"
