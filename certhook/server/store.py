"""The audit server's SQLite database: accounts, submissions, targets, results.

One file, WAL journal, ``synchronous=FULL``: a commit is on disk (the WAL
is fsynced) before it returns, which is what lets the server answer ``ok``
only for what survives a crash. Each thread opens its own connection with
:func:`connect`; the writes of submissions go through one thread (see
``committer.py``), the auditor and the notifier write their own rows.

API keys are 32 random bytes, shown once, stored as their SHA-256; a key
is looked up by that hash and the hashes compared with
``hmac.compare_digest``. An account has one current key and, for an
overlap after ``keys rotate``, its previous one (``old_key_hash`` until
``old_key_expires``). When each was last used is written at most once a
minute per key (:data:`LAST_USE_EVERY`), not on every submission.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from certhook.errors import LocalError, UsageError

__all__ = [
    "Account",
    "KeyCache",
    "add_account",
    "authenticate",
    "connect",
    "count_targets",
    "existing_targets",
    "hash_key",
    "list_accounts",
    "revoke_account",
    "rotate_key",
]

LAST_USE_EVERY = 60.0  # seconds: a key's last use is written at most this often

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
-- the time of a target's last renewal event on the report page (queries.event_times)
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


@dataclass(frozen=True)
class Account:
    """An account as ``keys list`` shows it: never a key, only dates."""

    name: str
    created: float
    revoked: float | None
    key_created: float | None = None  # the current key's issue (None: the account's)
    last_used: float | None = None  # the current key's last use, to a minute
    old_key_expires: float | None = None  # the previous key works until then
    old_last_used: float | None = None


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
    conn.row_factory = sqlite3.Row
    return conn


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


def hash_key(key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def add_account(conn: sqlite3.Connection, name: str, now: float | None = None) -> str:
    """Create account ``name`` and return its new key (shown once, never stored)."""
    if not name or not all(c.isalnum() or c in "._-@" for c in name) or len(name) > 64:
        raise UsageError(f"bad account name {name!r} (letters, digits, . _ - @)")
    key = secrets.token_urlsafe(32)  # 32 random bytes
    now = time.time() if now is None else now
    try:
        conn.execute(
            "INSERT INTO accounts (name, key_hash, created, key_created) VALUES (?, ?, ?, ?)",
            (name, hash_key(key), now, now),
        )
    except sqlite3.IntegrityError:
        row = conn.execute("SELECT revoked FROM accounts WHERE name = ?", (name,)).fetchone()
        if row is not None and row[0] is not None:
            # The name stays taken after a revocation: its targets and history keep it.
            raise UsageError(
                f"account {name!r} was revoked; 'certhook keys rotate {name}' gives it a new"
                " key (its targets and history are kept), or pick another name") from None
        raise UsageError(f"account {name!r} exists; 'certhook keys rotate {name}' issues it a"
                         " new key, or pick another name") from None
    return key


def rotate_key(conn: sqlite3.Connection, name: str, overlap: float,
               now: float | None = None) -> tuple[str, float | None]:
    """A new key for ``name``, and until when the old one keeps working (None: not at all).

    The current key keeps working ``overlap`` seconds more.
    Rotating a revoked account reactivates it with the new key only (the
    revoked key stays refused). Rotating again during an overlap ends the
    previous old key at once: there are never more than two keys.
    """
    now = time.time() if now is None else now
    row = conn.execute("SELECT revoked FROM accounts WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise UsageError(f"no account {name!r} ('certhook keys add {name}' creates it)")
    key = secrets.token_urlsafe(32)
    old_until = None
    if row[0] is not None or overlap <= 0:
        conn.execute("UPDATE accounts SET old_key_hash = NULL, old_key_expires = NULL,"
                     " old_last_used = NULL WHERE name = ?", (name,))
    else:
        conn.execute("UPDATE accounts SET old_key_hash = key_hash, old_key_expires = ?,"
                     " old_last_used = last_used WHERE name = ?", (now + overlap, name))
        old_until = now + overlap
    conn.execute("UPDATE accounts SET key_hash = ?, key_created = ?, last_used = NULL,"
                 " revoked = NULL WHERE name = ?", (hash_key(key), now, name))
    return key, old_until


def list_accounts(conn: sqlite3.Connection) -> list[Account]:
    rows = conn.execute(
        "SELECT name, created, revoked, key_created, last_used, old_key_expires, old_last_used"
        " FROM accounts ORDER BY name")
    return [Account(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]


def revoke_account(conn: sqlite3.Connection, name: str) -> bool:
    """Revoke the keys of ``name`` (the old one of a rotation too); False if there is
    no such active account."""
    cur = conn.execute(
        "UPDATE accounts SET revoked = ?, old_key_hash = NULL, old_key_expires = NULL"
        " WHERE name = ? AND revoked IS NULL", (time.time(), name)
    )
    return cur.rowcount > 0


def authenticate(conn: sqlite3.Connection, key: str | None, name: str | None = None,
                 now: float | None = None) -> str | None:
    """The name of the active account whose key is ``key``, or None.

    The key is the account's current one, or its previous one within the
    overlap of a rotation. With ``name`` (HTTP Basic), the key must also
    belong to that account. The lookup is by the key's SHA-256, so its
    timing says nothing about the key; the final comparison is constant-time
    all the same. A success records the key's last use (at most once a minute).
    """
    if not key:
        return None
    now = time.time() if now is None else now
    digest = hash_key(key)
    row = conn.execute(
        "SELECT name, key_hash, last_used, 'last_used' FROM accounts"
        " WHERE key_hash = ? AND revoked IS NULL"
        " UNION ALL SELECT name, old_key_hash, old_last_used, 'old_last_used' FROM accounts"
        " WHERE old_key_hash = ? AND revoked IS NULL AND old_key_expires > ?",
        (digest, digest, now),
    ).fetchone()
    if row is None or not hmac.compare_digest(bytes(row[1]), digest):
        return None
    if name is not None and not hmac.compare_digest(name.encode(), str(row[0]).encode()):
        return None
    if row[2] is None or now - row[2] >= LAST_USE_EVERY:
        _record_use(conn, [(str(row[3]), str(row[0]), now)])
    return str(row[0])


def _record_use(conn: sqlite3.Connection, uses: list[tuple[str, str, float]]) -> None:
    """Write last uses ``(column, account, time)``; a busy database skips it (it is a hint)."""
    for column in ("last_used", "old_last_used"):
        rows = [(when, name) for col, name, when in uses if col == column]
        if not rows:
            continue
        try:
            conn.executemany(f"UPDATE accounts SET {column} = ? WHERE name = ?", rows)  # noqa: S608
        except sqlite3.OperationalError:  # locked for longer than the timeout
            pass


def count_targets(conn: sqlite3.Connection, account: str) -> int:
    """How many targets ``account`` has."""
    row = conn.execute("SELECT count(*) FROM targets WHERE account = ?", (account,)).fetchone()
    return int(row[0])


TargetKey = tuple[str, int, str]  # domain, port, protocol


def existing_targets(conn: sqlite3.Connection, account: str,
                     keys: set[TargetKey]) -> set[TargetKey]:
    """Those of ``keys`` that ``account`` already has as targets."""
    found = set()
    for key in keys:  # each a lookup in the UNIQUE index
        if conn.execute("SELECT 1 FROM targets WHERE account = ? AND domain = ? AND port = ?"
                        " AND protocol = ?", (account, *key)).fetchone():
            found.add(key)
    return found


class KeyCache:
    """Active key hashes -> account names, reloaded when the database changed.

    For the writer thread, which authenticates every submission:
    ``PRAGMA data_version`` changes when another connection commits (a
    ``keys revoke`` or ``keys rotate`` from the command line, say), so it
    takes effect at the next batch. An old key's end of overlap is checked
    at each lookup against ``clock``. Last uses are gathered in memory and
    written by :meth:`flush_uses` inside the writer's transaction, at most
    once a minute per key.
    """

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self._clock = clock
        self._version = -1
        # hash -> (hash, account, expires or None, last-use column)
        self._keys: dict[bytes, tuple[bytes, str, float | None, str]] = {}
        self._written: dict[bytes, float] = {}  # hash -> last use written
        self._pending: dict[bytes, tuple[str, str, float]] = {}

    def refresh(self) -> None:
        version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            rows = self._conn.execute(
                "SELECT key_hash, name, NULL, 'last_used', last_used FROM accounts"
                " WHERE revoked IS NULL UNION ALL"
                " SELECT old_key_hash, name, old_key_expires, 'old_last_used', old_last_used"
                " FROM accounts WHERE revoked IS NULL AND old_key_hash IS NOT NULL"
            ).fetchall()
            self._keys = {bytes(r[0]): (bytes(r[0]), str(r[1]), r[2], str(r[3])) for r in rows}
            self._written = {bytes(r[0]): float(r[4]) for r in rows if r[4] is not None}
            self._version = version

    def lookup(self, key: str | None) -> str | None:
        if not key:
            return None
        digest = hash_key(key)
        found = self._keys.get(digest)
        if found is None:
            return None
        now = self._clock()
        # Found by hash; the comparison of hashes is constant-time all the same.
        if not hmac.compare_digest(found[0], digest) or (found[2] is not None
                                                         and now >= found[2]):
            return None
        if now - self._written.get(digest, -LAST_USE_EVERY) >= LAST_USE_EVERY:
            self._pending[digest] = (found[3], found[1], now)
        return found[1]

    def flush_uses(self) -> None:
        """Write the pending last uses (inside the caller's transaction)."""
        if self._pending:
            _record_use(self._conn, list(self._pending.values()))
            for digest, (_, _, when) in self._pending.items():
                self._written[digest] = when
            self._pending.clear()


# Targets chosen by ``certhook targets`` and /api/v1/targets: a name, and
# optionally a port and a protocol (recheck.Selector has this shape).
TARGET_COLUMNS = ("id, account, domain, port, protocol, state, state_since, last_submitted,"
                  " last_probe, muted_until")


def _select(account: str | None, domain: str, port: int | None,
            protocol: str | None) -> tuple[str, list[object]]:
    clauses: list[str] = ["domain = ?"]
    args: list[object] = [domain]
    if account is not None:
        clauses.append("account = ?")
        args.append(account)
    if port is not None:
        clauses.append("port = ?")
        args.append(port)
    if protocol is not None:
        clauses.append("protocol = ?")
        args.append(protocol)
    return " AND ".join(clauses), args


def find_targets(conn: sqlite3.Connection, account: str | None, domain: str,
                 port: int | None = None, protocol: str | None = None) -> list[sqlite3.Row]:
    """The targets of ``account`` (every account's for None) that match, in order."""
    where, args = _select(account, domain, port, protocol)
    return conn.execute(f"SELECT {TARGET_COLUMNS} FROM targets WHERE {where}"  # noqa: S608
                         " ORDER BY account, domain, port, protocol", args).fetchall()


def list_targets(conn: sqlite3.Connection, account: str | None, limit: int = 10**9,
                 after: tuple[str, int, str] | None = None) -> list[sqlite3.Row]:
    """Up to ``limit`` targets of ``account`` (all for None) after ``after``
    (domain, port, protocol; one account only), in order."""
    sql = f"SELECT {TARGET_COLUMNS} FROM targets"  # noqa: S608 - constant columns
    args: list[object] = []
    if account is not None:
        sql += " WHERE account = ?"
        args.append(account)
        if after is not None:
            sql += " AND (domain, port, protocol) > (?, ?, ?)"
            args.extend(after)
    return conn.execute(sql + " ORDER BY account, domain, port, protocol LIMIT ?",
                        (*args, limit)).fetchall()


def remove_targets(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> None:
    """Delete the targets ``rows`` (from :func:`find_targets`) and their history,
    in one transaction. A submission naming one again adds it back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        remove_targets_in(conn, [int(row["id"]) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def remove_targets_in(conn: sqlite3.Connection, ids: list[int]) -> None:
    """Delete targets by id, and their history, inside the caller's transaction."""
    conn.executemany("DELETE FROM results WHERE target = ?", [(i,) for i in ids])
    conn.executemany("DELETE FROM targets WHERE id = ?", [(i,) for i in ids])


def mute_targets(conn: sqlite3.Connection, rows: list[sqlite3.Row], until: float | None) -> None:
    """Mute the targets ``rows`` until ``until`` (None: unmute), in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("UPDATE targets SET muted_until = ? WHERE id = ?",
                         [(until, int(row["id"])) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
