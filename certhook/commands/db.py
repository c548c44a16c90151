"""``certhook db``: the audit server's database: ``migrate`` its schema, ``copy`` it.

``migrate`` creates the schema in an empty database, or upgrades an older
one to this certhook's version, in one transaction; run again, it does
nothing. ``copy`` moves an installation between databases (SQLite to
PostgreSQL, and back): into an empty target only, then checked table by
table, row counts and a content hash; exit 0 only if every table matches.
A database is named by the ``db`` setting's forms (docs/server.md
"Database"); a password in a URL is never printed.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    mig = sub.add_parser("migrate", help="create or upgrade the schema (idempotent)",
                         description="Create the schema in an empty database, or upgrade an"
                                     " older one, in one transaction.")
    mig.add_argument("--config", metavar="FILE",
                     help="the server's configuration file (its db setting)")
    mig.add_argument("--db", metavar="URL",
                     help="the database: a path, sqlite:///PATH or postgresql://... (default:"
                          " the config's, or /var/lib/certhook/certhook.db)")
    cp = sub.add_parser("copy", help="copy every row into an empty database, then verify",
                        description="Copy every table into an empty database (ids kept, one"
                                    " transaction), then compare row counts and content hashes"
                                    " per table; exit 0 only if all match.")
    cp.add_argument("--from", dest="source", metavar="URL", required=True,
                    help="the database to copy (read only)")
    cp.add_argument("--to", dest="target", metavar="URL", required=True,
                    help="the empty database to fill (created if a new SQLite file)")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import sys

    from certhook.server.store import dburl
    from certhook.server.store.conn import open_db

    if args.action == "migrate":
        from certhook.server.config import load_config
        from certhook.server.store.migrate import migrate

        text = args.db if args.db is not None else load_config(args.config).db
        url = dburl.parse(text, "--db" if args.db is not None else "db")
        with open_db(url) as db:
            done = migrate(db)
        print(f"{db.name}: schema {done.describe()}")
        return 0

    from certhook.server.store.copy import copy

    source_url = dburl.parse(args.source, "--from")
    target_url = dburl.parse(args.target, "--to")
    with open_db(source_url, create=False) as source, open_db(target_url) as dest:
        checks = copy(source, dest)
    for check in checks:
        print(check.line())
    bad = [check.table for check in checks if not check.ok]
    if bad:
        print(f"certhook db copy: {dest.name} differs from {source.name} in"
              f" {', '.join(bad)}", file=sys.stderr)
        return 1
    print(f"{source.name} -> {dest.name}: {sum(c.rows for c in checks)} rows,"
          " every table identical")
    return 0
