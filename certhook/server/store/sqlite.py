"""``SqliteStore``: the store in one SQLite file, the embedded default.

One file, WAL journal, ``synchronous=FULL``: a commit is on disk (the WAL
is fsynced) before it returns, which is what lets the server answer ``ok``
only for what survives a crash. Each thread opens its own connection on
first use; the writes of submissions go through one thread (see
``committer.py``), the auditor and the notifier write their own rows.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from certhook.errors import LocalError
from certhook.server.store.conn import open_db
from certhook.server.store.dburl import SqliteUrl
from certhook.server.store.migrate import migrate
from certhook.server.store.sql import SqlStore

__all__ = ["SqliteStore", "connect"]


def connect(path: str | os.PathLike[str], create: bool = True) -> sqlite3.Connection:
    """A connection to the database at ``path``, schema in place, durable settings on.

    ``isolation_level=None``: transactions are explicit (``BEGIN`` ...
    ``COMMIT``), so a batch of submissions is exactly one transaction.
    """
    db = Path(path)
    if not create and not db.exists():
        raise LocalError(f"{db}: no such database (start the server or run 'certhook keys add')")
    opened = open_db(SqliteUrl(str(db)), create)  # WAL, synchronous=FULL, 0600
    if create:
        try:
            migrate(opened)  # the declared schema, at its version
        except BaseException:
            opened.close()
            raise
    conn: sqlite3.Connection = opened.raw
    return conn


class SqliteStore(SqlStore):
    """The store in the SQLite file ``path``: a connection per thread, opened on first use.

    The first connection is opened here (a bad path is a LocalError now, not in a
    thread later) and, with ``create``, makes the schema and its migrations.
    """

    _busy_errors = (sqlite3.OperationalError,)

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self._local.conn = self._register(connect(self.path, create))

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._register(connect(self.path, False))
        return conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write

    def _begin_read(self, conn: Any) -> None:
        conn.execute("BEGIN")  # deferred: a read transaction, one snapshot of the WAL

    def accounts_version(self) -> int:
        """``PRAGMA data_version``: changes when another connection commits."""
        return int(self._connection().execute("PRAGMA data_version").fetchone()[0])
