"""What every SQL statement of the store goes through: connections, transactions, rows.

Portable between SQLite (3.31 and later) and PostgreSQL: ``?`` placeholders
(a driver with another style converts them in :meth:`SqlBase._execute`),
connections in autocommit with transactions begun by :meth:`SqlBase._begin`,
no RETURNING, no PRAGMA, no function only one engine knows.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import fields
from typing import Any

from certhook.server.store.base import Store
from certhook.server.store.records import Notification, ReportRow, Result, Target

__all__ = ["NOTIFICATION_COLUMNS", "RESULT_COLUMNS", "TARGET_COLUMNS", "SqlBase"]

TARGET_COLUMNS = tuple(f.name for f in fields(Target))
RESULT_COLUMNS = tuple(f.name for f in fields(Result))
NOTIFICATION_COLUMNS = tuple(f.name for f in fields(Notification))
_REPORT_EXTRA = len(fields(ReportRow)) - len(TARGET_COLUMNS)


def columns(names: Sequence[str], prefix: str = "") -> str:
    return ", ".join(prefix + name for name in names)


class SqlBase(Store):
    """Connections and transactions; the SQL of each area is in its mixin."""

    #: errors meaning "the database is busy", for writes that may be skipped
    _busy_errors: tuple[type[BaseException], ...] = ()

    def __init__(self) -> None:
        self._local = threading.local()

    # -- what an engine provides -----------------------------------------------------

    def _connection(self) -> Any:
        """This thread's connection, in autocommit (opened on first use)."""
        raise NotImplementedError

    def _begin(self, conn: Any) -> None:
        """Begin a transaction that writes (SQLite: BEGIN IMMEDIATE takes the lock now)."""
        self._execute(conn, "BEGIN")

    def _begin_read(self, conn: Any) -> None:
        """Begin a transaction whose reads all see one state."""
        self._execute(conn, "BEGIN")

    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        cur.execute(sql, tuple(args))
        return cur

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = conn.cursor()
        cur.executemany(sql, [tuple(r) for r in rows])
        return cur

    # -- helpers -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction on this thread's connection: committed, or rolled back."""
        conn = self._connection()
        self._begin(conn)
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):
                self._execute(conn, "ROLLBACK")
            raise
        self._execute(conn, "COMMIT")

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[None]:
        conn = self._connection()
        self._begin_read(conn)
        try:
            yield
        finally:
            self._execute(conn, "COMMIT")

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        return self._snapshot()

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return list(self._execute(self._connection(), sql, args).fetchall())

    def _one(self, sql: str, args: Sequence[Any] = ()) -> Any | None:
        return self._execute(self._connection(), sql, args).fetchone()

    @staticmethod
    def _target(row: Sequence[Any]) -> Target:
        return Target(*row[:len(TARGET_COLUMNS)])

    @staticmethod
    def _report_row(row: Sequence[Any]) -> ReportRow:
        return ReportRow(*row[:len(TARGET_COLUMNS) + _REPORT_EXTRA])

    def _targets_where(self, where: str, args: Sequence[Any], order: str = "",
                       conn: Any = None) -> list[Target]:
        sql = f"SELECT {columns(TARGET_COLUMNS)} FROM targets WHERE {where}"  # noqa: S608
        if order:
            sql += " ORDER BY " + order
        cur = self._execute(conn if conn is not None else self._connection(), sql, args)
        return [self._target(r) for r in cur.fetchall()]
