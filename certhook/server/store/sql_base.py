"""What every SQL statement of the store goes through: connections, transactions, rows.

Portable between SQLite (3.31 and later) and PostgreSQL: ``?`` placeholders
(a driver with another style converts them in :meth:`SqlBase._execute`),
connections in autocommit with transactions begun by :meth:`SqlBase._begin`,
no RETURNING, no PRAGMA, no function only one engine knows.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from certhook.errors import StoreConflict
from certhook.server.store.base import Store
from certhook.server.store.records import Notification, ReportRow, Result, Target

__all__ = ["CONFLICT_TRIES", "NOTIFICATION_COLUMNS", "RESULT_COLUMNS", "TARGET_COLUMNS",
           "SqlBase"]

T = TypeVar("T")
#: How many times a writer runs a transaction that crossed another's (StoreConflict).
CONFLICT_TRIES = 3

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
    #: after a SELECT in a writer's transaction whose rows it then updates: the row locks
    #: (SQLite's BEGIN IMMEDIATE holds the whole database already)
    _FOR_UPDATE = ""
    #: after a text column in ORDER BY and comparisons of cursors: bytewise order
    _COLLATE = ""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        # each thread's connection; a thread that ended has its own closed at the next open
        self._connections: dict[int, tuple[threading.Thread, Any]] = {}

    def _register(self, conn: Any) -> Any:
        """Record ``conn`` as this thread's; close those of threads that ended."""
        with self._lock:
            for ident, (thread, old) in list(self._connections.items()):
                if not thread.is_alive():
                    del self._connections[ident]
                    with contextlib.suppress(Exception):
                        old.close()
            self._connections[threading.get_ident()] = (threading.current_thread(), conn)
        return conn

    def _forget(self) -> None:
        """Drop this thread's connection (it broke): the next call opens another."""
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        with self._lock:
            self._connections.pop(threading.get_ident(), None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    @property
    def _all_connections(self) -> list[Any]:
        """Every open connection (tests reach the writer thread's through it)."""
        with self._lock:
            return [conn for _, conn in self._connections.values()]

    def close(self) -> None:
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for _, conn in conns:
            with contextlib.suppress(Exception):
                conn.close()

    def _lock_accounts(self, conn: Any) -> None:
        """In a writer's transaction that reads accounts and then writes them: hold
        them until the commit (SQLite's BEGIN IMMEDIATE has done it already)."""

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

    def _retrying(self, work: Callable[[], T]) -> T:
        """``work()``, one transaction, run again when it crossed another writer's and was
        rolled back (StoreConflict: two nodes' batches naming the same submissions in
        another order), up to :data:`CONFLICT_TRIES` times, after a short random pause."""
        for attempt in range(1, CONFLICT_TRIES + 1):
            try:
                return work()
            except StoreConflict:
                if attempt == CONFLICT_TRIES:
                    raise
                time.sleep(random.uniform(0.0, 0.02 * attempt))  # not in step again
        raise AssertionError("unreachable")

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
                       conn: Any = None, lock: bool = False) -> list[Target]:
        sql = f"SELECT {columns(TARGET_COLUMNS)} FROM targets WHERE {where}"  # noqa: S608
        if order:
            sql += " ORDER BY " + order
        if lock:
            sql += self._FOR_UPDATE
        cur = self._execute(conn if conn is not None else self._connection(), sql, args)
        return [self._target(r) for r in cur.fetchall()]
