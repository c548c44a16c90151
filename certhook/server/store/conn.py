"""One small connection type over SQLite and PostgreSQL, for ``db migrate`` and ``db copy``.

Statements are portable (``?`` placeholders); :class:`Db` converts them for
PostgreSQL, streams query results in batches, and translates each driver's
errors into certhook's (one line, the URL redacted). SQLite is opened with
the store's durable settings (WAL, ``synchronous=FULL``, foreign keys on)
and its file made private (0600): it holds API key hashes.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from certhook.errors import LocalError

from . import pg
from .dburl import PostgresUrl, SqliteUrl, Target

__all__ = ["BATCH", "Db", "open_db"]

BATCH = 1000  # rows per fetch and per insert
_names = itertools.count()


class Db:
    """A connection, its dialect (``sqlite`` or ``postgresql``), and the target it names."""

    def __init__(self, target: Target, raw: Any) -> None:
        self.target = target
        self.dialect = "sqlite" if isinstance(target, SqliteUrl) else "postgresql"
        self.raw = raw
        self.in_transaction = False

    @property
    def name(self) -> str:
        """The database as messages show it (a path, or the redacted URL)."""
        return self.target.redacted()

    def _sql(self, sql: str) -> str:
        return sql if self.dialect == "sqlite" else pg.to_pyformat(sql)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LocalError(f"{self.name}: {exc}") from None
        except LocalError:
            raise
        except Exception as exc:
            if self.dialect == "postgresql" and type(exc).__module__.startswith("psycopg"):
                assert isinstance(self.target, PostgresUrl)
                raise pg.translate(exc, self.target) from None
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (small results only: see :meth:`stream`)."""
        with self._errors():
            cur = self.raw.execute(self._sql(sql), tuple(params))
            rows = cur.fetchall() if cur.description else []
            return [tuple(row) for row in rows]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self._errors():
            if self.dialect == "sqlite":
                self.raw.executemany(sql, rows)
            else:
                with self.raw.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)

    def stream(self, sql: str, params: Sequence[Any] = (),
               size: int = BATCH) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of a query in batches of ``size``, never all in memory.

        PostgreSQL reads through a server-side cursor, which lives in the
        current transaction: call it inside :meth:`transaction`.
        """
        with self._errors():
            if self.dialect == "sqlite":
                cur = self.raw.execute(sql, tuple(params))
                try:
                    while True:
                        rows = cur.fetchmany(size)
                        if not rows:
                            return
                        yield [tuple(row) for row in rows]
                finally:
                    cur.close()
            else:
                assert self.in_transaction, "a server-side cursor needs a transaction"
                with self.raw.cursor(name=f"certhook_{next(_names)}") as cur:
                    cur.itersize = size
                    cur.execute(self._sql(sql), tuple(params))
                    while True:
                        rows = cur.fetchmany(size)
                        if not rows:
                            return
                        yield [tuple(row) for row in rows]

    @contextlib.contextmanager
    def transaction(self, write: bool = True, snapshot: bool = False) -> Iterator[None]:
        """One explicit transaction: committed if the block ends, rolled back if it raises.

        ``write``: SQLite takes the write lock at once (BEGIN IMMEDIATE), so
        two writers queue instead of failing at their first write.
        ``snapshot``: every read sees the same moment (PostgreSQL
        REPEATABLE READ; SQLite's read transaction is a snapshot anyway).
        """
        if self.dialect == "sqlite":
            begin = "BEGIN IMMEDIATE" if write else "BEGIN"
        else:
            begin = pg.BEGIN + (" ISOLATION LEVEL REPEATABLE READ" if snapshot else "")
            begin += "" if write else " READ ONLY"
        self.execute(begin)
        self.in_transaction = True
        try:
            yield
        except BaseException:
            self.in_transaction = False
            with contextlib.suppress(Exception):
                self.raw.execute("ROLLBACK")
            raise
        self.in_transaction = False
        self.execute("COMMIT")

    def tables(self) -> set[str]:
        """The names of the tables in the database (the public schema on PostgreSQL)."""
        if self.dialect == "sqlite":
            rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = self.execute("SELECT table_name FROM information_schema.tables"
                                " WHERE table_schema = current_schema()")
        return {str(row[0]) for row in rows}

    def columns(self, table: str) -> list[str]:
        """The columns of ``table``, in order."""
        if self.dialect == "sqlite":
            return [str(row[1]) for row in self.execute(f"PRAGMA table_info({table})")]
        rows = self.execute("SELECT column_name FROM information_schema.columns"
                            " WHERE table_schema = current_schema() AND table_name = ?"
                            " ORDER BY ordinal_position", (table,))
        return [str(row[0]) for row in rows]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.raw.close()

    def __enter__(self) -> Db:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_db(target: Target, create: bool = True) -> Db:
    """A connection to ``target``; a SQLite file is created if ``create``."""
    if isinstance(target, PostgresUrl):
        return Db(target, pg.connect(target))
    path = Path(target.path)
    if not create and not path.exists():
        raise LocalError(f"{path}: no such database")
    try:
        if create:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        raw = sqlite3.connect(str(path), timeout=30.0, isolation_level=None,
                              check_same_thread=False)
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        raw.execute("PRAGMA foreign_keys=ON")
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
    except (sqlite3.Error, OSError) as exc:
        raise LocalError(f"{path}: {exc}") from None
    return Db(target, raw)
