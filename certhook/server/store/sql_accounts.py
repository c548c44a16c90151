"""Accounts, keys and the group commit of submissions, in portable SQL.

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
import secrets
import time
from collections.abc import Sequence
from typing import Any

from certhook.errors import UsageError
from certhook.server.store.records import Account, ActiveKey, Submission, TargetKey, Use
from certhook.server.store.sql_base import SqlBase
from certhook.server.store.sql_vantages import BRING_FORWARD, UPSERT_VANTAGE

__all__ = ["LAST_USE_EVERY", "AccountsMixin", "hash_key"]

LAST_USE_EVERY = 60.0  # seconds: a key's last use is written at most this often


def hash_key(key: str) -> bytes:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


_INSERT_SUBMISSION = """
INSERT INTO submissions (account, client_id, time, transport, peer, domains, ports,
    protocols, fingerprint, lineage, event, client)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account, client_id) DO NOTHING
"""

# Inside DO UPDATE, targets.* is the old row and excluded.* the new one; all SET
# expressions see the old row, so their order does not matter. ``vantages`` is set when
# the target is added: a node's start changes it (sync_vantages, with the rows), never
# a submission.
_UPSERT_TARGET = """
INSERT INTO targets (account, domain, port, protocol, created, last_submitted, lineage,
    last_event, expected_fingerprint, expected_since, next_probe, reasons, acme_server,
    renew_before, vantages)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account, domain, port, protocol) DO UPDATE SET
    last_submitted = excluded.last_submitted,
    lineage = coalesce(excluded.lineage, targets.lineage),
    last_event = coalesce(excluded.last_event, targets.last_event),
    expected_fingerprint = coalesce(excluded.expected_fingerprint,
                                    targets.expected_fingerprint),
    acme_server = coalesce(excluded.acme_server, targets.acme_server),
    renew_before = coalesce(excluded.renew_before, targets.renew_before),
    expected_since = CASE
        WHEN excluded.expected_fingerprint IS NOT NULL
             AND (targets.expected_fingerprint IS NULL
                  OR excluded.expected_fingerprint <> targets.expected_fingerprint)
        THEN excluded.expected_since ELSE targets.expected_since END,
    next_probe = CASE WHEN targets.next_probe IS NULL THEN NULL
        WHEN excluded.next_probe < targets.next_probe THEN excluded.next_probe
        ELSE targets.next_probe END
"""

# lineage, event, fingerprint, since, ACME, renew_before: a later submission's wins
_MERGED = (6, 7, 8, 9, 12, 13)


class AccountsMixin(SqlBase):
    """Accounts and keys; submissions and their targets."""

    def add_account(self, name: str, now: float | None = None) -> str:
        if not name or not all(c.isalnum() or c in "._-@" for c in name) or len(name) > 64:
            raise UsageError(f"bad account name {name!r} (letters, digits, . _ - @)")
        key = secrets.token_urlsafe(32)  # 32 random bytes
        now = time.time() if now is None else now
        with self._transaction() as conn:
            self._lock_accounts(conn)
            row = self._execute(conn, "SELECT revoked FROM accounts WHERE name = ?",
                                (name,)).fetchone()
            if row is not None and row[0] is not None:
                # The name stays taken after a revocation: its targets and history keep it.
                raise UsageError(
                    f"account {name!r} was revoked; 'certhook keys rotate {name}' gives it a"
                    " new key (its targets and history are kept), or pick another name")
            if row is not None:
                raise UsageError(f"account {name!r} exists; 'certhook keys rotate {name}'"
                                 " issues it a new key, or pick another name")
            self._execute(conn, "INSERT INTO accounts (name, key_hash, created, key_created)"
                          " VALUES (?, ?, ?, ?)", (name, hash_key(key), now, now))
        return key

    def rotate_key(self, name: str, overlap: float,
                   now: float | None = None) -> tuple[str, float | None]:
        """The current key keeps working ``overlap`` seconds more. Rotating a revoked
        account reactivates it with the new key only. Rotating again during an overlap
        ends the previous old key at once: there are never more than two keys."""
        now = time.time() if now is None else now
        key = secrets.token_urlsafe(32)
        old_until = None
        with self._transaction() as conn:
            self._lock_accounts(conn)
            row = self._execute(conn, "SELECT revoked FROM accounts WHERE name = ?",
                                (name,)).fetchone()
            if row is None:
                raise UsageError(f"no account {name!r} ('certhook keys add {name}' creates it)")
            if row[0] is not None or overlap <= 0:
                self._execute(conn, "UPDATE accounts SET old_key_hash = NULL,"
                              " old_key_expires = NULL, old_last_used = NULL WHERE name = ?",
                              (name,))
            else:
                self._execute(conn, "UPDATE accounts SET old_key_hash = key_hash,"
                              " old_key_expires = ?, old_last_used = last_used WHERE name = ?",
                              (now + overlap, name))
                old_until = now + overlap
            self._execute(conn, "UPDATE accounts SET key_hash = ?, key_created = ?,"
                          " last_used = NULL, revoked = NULL WHERE name = ?",
                          (hash_key(key), now, name))
        return key, old_until

    def list_accounts(self) -> list[Account]:
        rows = self._all("SELECT name, created, revoked, key_created, last_used,"  # noqa: S608
                         " old_key_expires, old_last_used FROM accounts"
                         f" ORDER BY name{self._COLLATE}")
        return [Account(*r) for r in rows]

    def revoke_account(self, name: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        with self._transaction() as conn:
            self._lock_accounts(conn)
            row = self._execute(conn, "SELECT 1 FROM accounts WHERE name = ? AND revoked IS NULL",
                                (name,)).fetchone()
            if row is None:
                return False
            self._execute(conn, "UPDATE accounts SET revoked = ?, old_key_hash = NULL,"
                          " old_key_expires = NULL WHERE name = ?", (now, name))
        return True

    def authenticate(self, key: str | None, name: str | None = None,
                     now: float | None = None) -> str | None:
        """The lookup is by the key's SHA-256, so its timing says nothing about the key;
        the final comparison is constant-time all the same."""
        if not key:
            return None
        now = time.time() if now is None else now
        digest = hash_key(key)
        row = self._one(
            "SELECT name, key_hash, last_used, 'last_used' FROM accounts"
            " WHERE key_hash = ? AND revoked IS NULL"
            " UNION ALL SELECT name, old_key_hash, old_last_used, 'old_last_used' FROM accounts"
            " WHERE old_key_hash = ? AND revoked IS NULL AND old_key_expires > ?",
            (digest, digest, now))
        if row is None or not hmac.compare_digest(bytes(row[1]), digest):
            return None
        if name is not None and not hmac.compare_digest(name.encode(), str(row[0]).encode()):
            return None
        if row[2] is None or now - row[2] >= LAST_USE_EVERY:
            self.record_uses([(str(row[3]), str(row[0]), now)])
        return str(row[0])

    def active_keys(self) -> list[ActiveKey]:
        rows = self._all(
            "SELECT key_hash, name, NULL, 'last_used', last_used FROM accounts"
            " WHERE revoked IS NULL UNION ALL"
            " SELECT old_key_hash, name, old_key_expires, 'old_last_used', old_last_used"
            " FROM accounts WHERE revoked IS NULL AND old_key_hash IS NOT NULL")
        return [ActiveKey(bytes(r[0]), str(r[1]), r[2], str(r[3]), r[4]) for r in rows]

    def record_uses(self, uses: Sequence[Use]) -> None:
        try:
            self._write_uses(self._connection(), uses)
        except self._busy_errors:  # locked for longer than the timeout: it is a hint
            pass

    def _write_uses(self, conn: Any, uses: Sequence[Use]) -> None:
        for column in ("last_used", "old_last_used"):
            rows = [(when, name) for col, name, when in uses if col == column]
            if rows:
                self._executemany(conn, f"UPDATE accounts SET {column} = ?"  # noqa: S608
                                  " WHERE name = ?", rows)

    # -- submissions -------------------------------------------------------------------

    def count_targets(self, account: str) -> int:
        row = self._one("SELECT count(*) FROM targets WHERE account = ?", (account,))
        return int(row[0]) if row else 0

    def existing_targets(self, account: str, keys: set[TargetKey]) -> set[TargetKey]:
        found = set()
        conn = self._connection()
        for key in keys:  # each a lookup in the UNIQUE index
            if self._execute(conn, "SELECT 1 FROM targets WHERE account = ? AND domain = ?"
                             " AND port = ? AND protocol = ?", (account, *key)).fetchone():
                found.add(key)
        return found

    def commit_batch(self, uses: Sequence[Use], submissions: Sequence[Submission]) -> list[bool]:
        # Two nodes' batches may name the same submissions (a client retrying elsewhere)
        # in other orders: PostgreSQL then rolls one back (a deadlock), run again here.
        return self._retrying(lambda: self._commit_batch(uses, submissions))

    def _commit_batch(self, uses: Sequence[Use], submissions: Sequence[Submission]
                      ) -> list[bool]:
        with self._transaction() as conn:
            if uses:
                self._write_uses(conn, uses)
            new = self._insert_new_submissions(conn, submissions) if submissions else []
            # One upsert per distinct target of the batch; a later submission's values win,
            # as if the upserts ran one after the other (they share one time).
            targets: dict[tuple[Any, ...], list[Any]] = {}
            for sub, is_new in zip(submissions, new):
                if not is_new:
                    continue
                for t in sub.targets:
                    row = (t.account, t.domain, t.port, t.protocol, t.now, t.now, t.lineage,
                           t.event, t.fingerprint, t.expected_since, t.next_probe, t.reasons,
                           t.acme_server, t.renew_before, ",".join(t.vantages))
                    old = targets.get(row[:4])
                    if old is None:
                        targets[row[:4]] = list(row)
                    else:
                        for i in _MERGED:
                            if row[i] is not None:
                                old[i] = row[i]
            if targets:  # in key order: two nodes' batches lock shared rows alike
                rows = [targets[k] for k in sorted(targets)]
                self._executemany(conn, _UPSERT_TARGET, rows)
                # a target probed from vantages (vantages.py): its rows, due as the target
                vantaged = [row for row in rows if row[14]]
                if vantaged:
                    self._executemany(conn, UPSERT_VANTAGE, [
                        (vantage, row[4], row[10], *row[:4], vantage) for row in vantaged
                        for vantage in row[14].split(",")])
                    self._executemany(conn, BRING_FORWARD, [
                        (row[10], row[10], *row[:4]) for row in vantaged])
        return new

    def submissions(self, account: str | None = None) -> list[Submission]:
        sql = ("SELECT account, client_id, time, transport, peer, domains, ports, protocols,"
               " fingerprint, lineage, event, client FROM submissions")
        if account is None:
            rows = self._all(sql + " ORDER BY id")
        else:
            rows = self._all(sql + " WHERE account = ? ORDER BY id", (account,))
        return [Submission(*r) for r in rows]

    def _insert_new_submissions(self, conn: Any, submissions: Sequence[Submission]) -> list[bool]:
        """Insert the submissions; which were new. Relies on the driver's rowcount after
        executemany being the rows inserted (sqlite3 and psycopg both give it)."""
        rows = [(s.account, s.client_id, s.time, s.transport, s.peer, s.domains, s.ports,
                 s.protocols, s.fingerprint, s.lineage, s.event, s.client) for s in submissions]
        # Fast path: one executemany, and if every row went in, none was a retry.
        self._execute(conn, "SAVEPOINT batch")
        cur = self._executemany(conn, _INSERT_SUBMISSION, rows)
        if cur.rowcount == len(rows):
            new = [True] * len(rows)
        else:  # a retry is among them: redo row by row to learn which
            self._execute(conn, "ROLLBACK TO SAVEPOINT batch")
            new = [self._execute(conn, _INSERT_SUBMISSION, row).rowcount > 0 for row in rows]
        self._execute(conn, "RELEASE SAVEPOINT batch")
        return new
