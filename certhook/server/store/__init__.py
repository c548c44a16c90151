"""The audit server's database: the only place that speaks SQL (schema, migrate, copy too).

:func:`open_store` gives a :class:`Store` (``base.py``, the typed interface)
for a ``db`` setting: a path, or ``sqlite:///abs/path``, is SQLite
(``sqlite.py``). The statements are written once, portable, in ``sql.py``
and its mixins; the committer, auditor, notifier, report, metrics, recheck,
targets, WSGI app and the commands call the store's methods.
"""

from __future__ import annotations

import os

from certhook.server.store.base import Store
from certhook.server.store.keycache import KeyCache
from certhook.server.store.records import (
    SEVERITY,
    SILENT,
    Account,
    ActiveKey,
    Cursor,
    Notice,
    Notification,
    ProbeWrite,
    ReportRow,
    Result,
    Submission,
    Target,
    TargetKey,
    TargetUpsert,
    Vantage,
    VantageWrite,
)
from certhook.server.store.sql_accounts import LAST_USE_EVERY, hash_key

__all__ = [
    "LAST_USE_EVERY",
    "SEVERITY",
    "SILENT",
    "Account",
    "ActiveKey",
    "Cursor",
    "KeyCache",
    "Notice",
    "Notification",
    "ProbeWrite",
    "ReportRow",
    "Result",
    "Store",
    "Submission",
    "Target",
    "TargetKey",
    "TargetUpsert",
    "Vantage",
    "VantageWrite",
    "hash_key",
    "open_store",
]

def open_store(db: str | os.PathLike[str], create: bool = True) -> Store:
    """The store for the ``db`` setting; with ``create``, made (schema, migrations) if new.

    A path or ``sqlite:`` URL is SQLite; ``postgresql://`` PostgreSQL (psycopg is
    imported then, and only then). LocalError when it cannot be opened (without
    ``create``: when it does not exist); StoreUnavailable when the server cannot be
    reached; ParseError for a setting that names no database. Messages carry the
    URL redacted.
    """
    from certhook.server.store import dburl

    target = dburl.parse(os.fspath(db))
    if isinstance(target, dburl.PostgresUrl):
        from certhook.server.store.postgres import PostgresStore

        return PostgresStore(target, create)
    from certhook.server.store.sqlite import SqliteStore

    return SqliteStore(target.path, create)
