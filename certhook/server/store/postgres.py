"""``PostgresStore``: the store in a PostgreSQL database (``db = postgresql://...``).

The statements are :class:`~certhook.server.store.sql.SqlStore`'s, written
once; this module gives them connections and the dialect's few differences:

- a connection per thread, in autocommit with explicit ``BEGIN`` (``pg.connect``),
  ``synchronous_commit = on`` for the session: a ``COMMIT`` has returned only when
  the WAL is flushed, so ``ok`` is sent only for what survives a crash, whatever
  the server's default;
- ``?`` placeholders in psycopg's format (:func:`~.pg.to_pyformat`);
- errors translated once (:func:`~.pg.translate`): losing the server is
  :class:`~certhook.errors.StoreUnavailable` and drops the thread's connection,
  so the next call connects again; anything else a one-line LocalError;
- writers in READ COMMITTED, with the row locks SQLite's ``BEGIN IMMEDIATE``
  gave implicitly taken where a method reads rows and then writes them from
  what it read: the probe's target row (``SELECT ... FOR UPDATE``, so two
  nodes' results for one target apply one after the other, each seeing the
  other's notified state), and the accounts table for ``keys add|rotate|revoke``
  (rare commands: a table lock is simplest). Submissions need none: their
  inserts and upserts are single statements with ``ON CONFLICT`` (atomic under
  READ COMMITTED) and a batch upserts its targets in key order, so two nodes'
  batches cannot deadlock on them;
- readers of one view (``snapshot``) in REPEATABLE READ, READ ONLY;
- text ordered ``COLLATE "C"`` where SQLite's order is bytewise (cursors, pages).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from certhook.errors import LocalError
from certhook.server.store import pg
from certhook.server.store.conn import Db
from certhook.server.store.dburl import PostgresUrl
from certhook.server.store.migrate import current_version, migrate
from certhook.server.store.sql import SqlStore

__all__ = ["PostgresStore"]

# Changes when a key is added, rotated, expired or revoked, not when one is used
# (last_used): one narrow pass over accounts, which are few.
_ACCOUNTS_VERSION = (
    "SELECT count(*), coalesce(sum(hashtextextended(name || ':' || encode(key_hash, 'hex')"
    " || ':' || coalesce(encode(old_key_hash, 'hex'), '') || ':'"
    " || coalesce(old_key_expires::text, '') || ':' || coalesce(revoked::text, ''), 0)), 0)"
    " FROM accounts")


class PostgresStore(SqlStore):
    """The store in the PostgreSQL database ``url``: a connection per thread, opened on
    first use (and again after the server was lost).

    The first connection is opened here: a bad URL or password is an error now, not in
    a thread later. With ``create`` the schema is made or upgraded (``db migrate``'s
    code, under its advisory lock); without, a database without it is an error.
    """

    _FOR_UPDATE = " FOR UPDATE"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"  # a claim skips the rows another node is claiming
    _COLLATE = ' COLLATE "C"'

    def __init__(self, url: PostgresUrl, create: bool = True) -> None:
        super().__init__()
        self.url = url
        conn = self._local.conn = self._register(self._connect())
        db = Db(url, conn)
        if create:
            migrate(db)
        elif current_version(db)[0] == 0:
            self.close()
            raise LocalError(f"db = {url.redacted()}: no certhook schema in it (start the"
                             " server or run 'certhook db migrate')")

    def _connect(self) -> Any:
        conn = pg.connect(self.url)
        try:
            conn.execute("SET synchronous_commit = on")
        except Exception as exc:
            conn.close()
            raise pg.translate(exc, self.url) from None
        return conn

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            if conn is not None:
                self._forget()
            conn = self._local.conn = self._register(self._connect())
        return conn

    def _fail(self, exc: Exception) -> LocalError:
        error = pg.translate(exc, self.url)
        if pg.is_unavailable(exc):
            self._forget()  # reconnect on the next call
        return error

    def _execute(self, conn: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur = conn.cursor()
        try:
            cur.execute(pg.to_pyformat(sql), tuple(args))
        except Exception as exc:
            if not type(exc).__module__.startswith("psycopg"):
                raise
            raise self._fail(exc) from None
        return cur

    def _executemany(self, conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cur = conn.cursor()
        try:
            cur.executemany(pg.to_pyformat(sql), [tuple(r) for r in rows])
        except Exception as exc:
            if not type(exc).__module__.startswith("psycopg"):
                raise
            raise self._fail(exc) from None
        return cur

    def _begin_read(self, conn: Any) -> None:
        self._execute(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def _lock_accounts(self, conn: Any) -> None:
        # SHARE ROW EXCLUSIVE: one such writer at a time, readers go on
        self._execute(conn, "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")

    def accounts_version(self) -> int:
        row = self._one(_ACCOUNTS_VERSION)
        count, digest = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return hash((count, digest))
