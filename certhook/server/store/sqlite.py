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
import threading
from pathlib import Path
from typing import Any

from certhook.errors import LocalError
from certhook.server.store.sql import SqlStore

__all__ = ["SCHEMA", "SqliteStore", "connect"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    key_hash BLOB NOT NULL UNIQUE,
    created REAL NOT NULL,
    revoked REAL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    client_id TEXT NOT NULL,
    time REAL NOT NULL,
    transport TEXT NOT NULL,
    peer TEXT,
    domains TEXT NOT NULL,
    ports TEXT NOT NULL,
    protocols TEXT NOT NULL,
    fingerprint TEXT,
    lineage TEXT,
    event TEXT,
    client TEXT,
    UNIQUE (account, client_id)
);
-- the time of a target's last renewal event on the report page (Store.event_time)
CREATE INDEX IF NOT EXISTS submissions_events ON submissions (account, lineage, time)
    WHERE event IS NOT NULL;
CREATE TABLE IF NOT EXISTS targets (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    domain TEXT NOT NULL,
    port INTEGER NOT NULL,
    protocol TEXT NOT NULL,
    created REAL NOT NULL,
    last_submitted REAL NOT NULL,
    lineage TEXT,
    last_event TEXT,
    expected_fingerprint TEXT,
    expected_since REAL,
    next_probe REAL,
    state TEXT NOT NULL DEFAULT 'unknown',
    state_since REAL,
    notified_state TEXT,
    failures INTEGER NOT NULL DEFAULT 0,
    notified_days TEXT NOT NULL DEFAULT '',
    notified_for TEXT,
    last_probe REAL,
    status TEXT,
    reasons TEXT NOT NULL DEFAULT '',
    days_left INTEGER,
    not_after REAL,
    issuer TEXT,
    served_fingerprint TEXT,
    deployed INTEGER,
    address TEXT,
    acme_server TEXT,
    renew_before INTEGER,
    UNIQUE (account, domain, port, protocol)
);
CREATE INDEX IF NOT EXISTS targets_due ON targets (next_probe);
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY,
    target INTEGER NOT NULL REFERENCES targets (id),
    time REAL NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    reasons TEXT NOT NULL,
    days_left INTEGER,
    not_after REAL,
    issuer TEXT,
    fingerprint TEXT,
    deployed INTEGER,
    address TEXT,
    elapsed REAL
);
CREATE INDEX IF NOT EXISTS results_target ON results (target, time);
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    channel TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    sent REAL,
    failed REAL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (sent, failed, next_attempt);
"""


# Columns added after a release: (table, column, type). CREATE TABLE IF NOT
# EXISTS leaves an existing database's tables as they were, so each is added
# with ALTER TABLE where it is missing (SQLite adds a column in O(1)).
_ADDED_COLUMNS = (
    ("targets", "acme_server", "TEXT"),  # the lineage's ACME directory (ARI), issue 10
    ("targets", "renew_before", "INTEGER"),  # its renew_before_expiry, seconds, issue 10
    # key rotation and last use (issue 11.1)
    ("accounts", "key_created", "REAL"),
    ("accounts", "last_used", "REAL"),
    ("accounts", "old_key_hash", "BLOB"),
    ("accounts", "old_key_expires", "REAL"),
    ("accounts", "old_last_used", "REAL"),
    # muted until (issue 11.1): still probed and shown, not notified
    ("targets", "muted_until", "REAL"),
    # the last probe that reached a usable certificate (ok or warning): retirement
    ("targets", "last_good", "REAL"),
    # leases of several nodes on one database (issue 12, schema version 5)
    ("targets", "lease_owner", "TEXT"),
    ("targets", "lease_until", "REAL"),
    ("notifications", "lease_owner", "TEXT"),
    ("notifications", "lease_until", "REAL"),
)
# Filled in once when a column is added to an existing database.
_BACKFILL = {
    ("targets", "last_good"): "UPDATE targets SET last_good = (SELECT max(time) FROM results"
                              " WHERE target = targets.id AND status IN ('ok', 'warning'))",
}


def _migrate(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            try:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as exc:  # another process added it first
                if "duplicate column" not in str(exc):
                    raise
            else:
                if (table, column) in _BACKFILL:
                    conn.execute(_BACKFILL[table, column])
    conn.execute("CREATE INDEX IF NOT EXISTS targets_claim ON targets (next_probe, lease_until)")



def connect(path: str | os.PathLike[str], create: bool = True) -> sqlite3.Connection:
    """A connection to the database at ``path``, schema in place, durable settings on.

    ``isolation_level=None``: transactions are explicit (``BEGIN`` ...
    ``COMMIT``), so a batch of submissions is exactly one transaction.
    """
    db = Path(path)
    if not create and not db.exists():
        raise LocalError(f"{db}: no such database (start the server or run 'certhook keys add')")
    try:
        if create:
            db.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        conn = sqlite3.connect(str(db), timeout=30.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: in WAL mode, fsync the WAL at every commit (NORMAL would not,
        # and an acknowledged submission could be lost with the power).
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        if create:
            conn.executescript(SCHEMA)
            _migrate(conn)
        if db.stat().st_mode & 0o077:
            os.chmod(db, 0o600)  # holds key hashes and SMTP-bound addresses
    except (sqlite3.Error, OSError) as exc:
        raise LocalError(f"{db}: {exc}") from None
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
        self._lock = threading.Lock()
        # each thread's connection; a thread that ended has its own closed at the next open
        self._connections: dict[int, tuple[threading.Thread, sqlite3.Connection]] = {}
        self._local.conn = self._open(create)

    def _open(self, create: bool) -> sqlite3.Connection:
        conn = connect(self.path, create)
        with self._lock:
            for ident, (thread, old) in list(self._connections.items()):
                if not thread.is_alive():
                    del self._connections[ident]
                    old.close()
            self._connections[threading.get_ident()] = (threading.current_thread(), conn)
        return conn

    @property
    def _all_connections(self) -> list[sqlite3.Connection]:
        """Every open connection (tests reach the writer thread's through it)."""
        with self._lock:
            return [conn for _, conn in self._connections.values()]

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open(False)
        return conn

    def _begin(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write

    def _begin_read(self, conn: Any) -> None:
        conn.execute("BEGIN")  # deferred: a read transaction, one snapshot of the WAL

    def accounts_version(self) -> int:
        """``PRAGMA data_version``: changes when another connection commits."""
        return int(self._connection().execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            conns, self._connections = list(self._connections.values()), {}
        for _, conn in conns:
            conn.close()
