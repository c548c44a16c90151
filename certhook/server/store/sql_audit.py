"""The auditor's and the notifier's statements, in portable SQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable

from certhook.server.store.records import Notice, Notification, ProbeWrite, Target
from certhook.server.store.sql_base import NOTIFICATION_COLUMNS, SqlBase, columns

__all__ = ["AuditMixin"]

_INSERT_RESULT = (
    "INSERT INTO results (target, time, status, state, reasons, days_left, not_after,"
    " issuer, fingerprint, deployed, address, elapsed, not_before, vantage)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")
# A submission or a recheck that came during the probe (after ``started``) asked for a
# new probe: the sooner of the two times wins then (a NULL next_probe stays NULL).
_UPDATE_TARGET = (
    "UPDATE targets SET state = ?, state_since = CASE WHEN state = ? THEN state_since"
    " ELSE ? END, failures = ?, notified_state = ?, notified_days = ?, notified_for = ?,"
    " last_probe = ?, status = ?, reasons = ?, days_left = ?, not_after = ?, issuer = ?,"
    " served_fingerprint = ?, deployed = ?, address = ?, chain = coalesce(?, chain),"
    " lease_owner = NULL, lease_until = NULL,"
    " next_probe = CASE WHEN last_submitted > ? OR next_probe > ?"
    " THEN (CASE WHEN next_probe IS NULL THEN NULL WHEN next_probe < ? THEN next_probe"
    " ELSE ? END) ELSE ? END WHERE id = ?")
_TRIM = ("DELETE FROM results WHERE target = ? AND id NOT IN (SELECT id FROM results"
         " WHERE target = ? ORDER BY time DESC LIMIT ?)")
_INSERT_NOTICE = ("INSERT INTO notifications (account, channel, destination, payload, created,"
                  " next_attempt) VALUES (?, ?, ?, ?, ?, ?)")
_PENDING = "sent IS NULL AND failed IS NULL"
_DUE_DESTINATIONS = ("SELECT DISTINCT account, channel, destination FROM notifications"
                     " WHERE sent IS NULL AND failed IS NULL AND next_attempt <= ? LIMIT ?")
# a row leased by another node is due again when its lease ends, not before
_NEXT_NOTIFICATION = ("SELECT min(CASE WHEN lease_until > next_attempt THEN lease_until"
                      " ELSE next_attempt END) FROM notifications"
                      " WHERE sent IS NULL AND failed IS NULL")
# Leases (issue 12): a row is free when it has no lease or its lease ended by now.
_FREE = "(lease_until IS NULL OR lease_until <= ?)"
# a target probed from vantages is claimed by its vantages' rows (sql_vantages.py)
_CLAIM_TARGETS = ("next_probe IS NOT NULL AND next_probe <= ? AND " + _FREE
                  + " AND vantages = ''")
_LEASE = "UPDATE {} SET lease_owner = ?, lease_until = ? WHERE id = ?"
# The destinations with a due, free row and no row leased by another node (whose
# delivery is under way: the next digest of that destination waits for it).
_CLAIM_DESTINATIONS = (
    "SELECT account, channel, destination FROM notifications AS n"
    " WHERE sent IS NULL AND failed IS NULL AND next_attempt <= ?"
    " AND (lease_until IS NULL OR lease_until <= ?) AND NOT EXISTS ("
    " SELECT 1 FROM notifications AS o WHERE o.account = n.account"
    " AND o.channel = n.channel AND o.destination = n.destination"
    " AND o.sent IS NULL AND o.failed IS NULL AND o.lease_until > ?) ORDER BY id LIMIT ?")
_DESTINATION = f"account = ? AND channel = ? AND destination = ? AND {_PENDING}"


class AuditMixin(SqlBase):
    """Due probes and their results; the notification outbox."""

    #: Appended to a claim's SELECT. PostgreSQL's store sets ``" FOR UPDATE SKIP
    #: LOCKED"``: nodes claiming at once skip each other's rows instead of waiting
    #: (or claiming them twice). SQLite needs nothing: ``BEGIN IMMEDIATE`` takes the
    #: database's write lock, so claims run one after the other.
    _SKIP_LOCKED = ""

    def claim_targets(self, now: float, limit: int, owner: str, until: float) -> list[Target]:
        with self._transaction() as conn:
            found = self._targets_where(_CLAIM_TARGETS, (now, now, limit),
                                        "next_probe, id LIMIT ?" + self._SKIP_LOCKED, conn=conn)
            self._executemany(conn, _LEASE.format("targets"),
                              [(owner, until, t.id) for t in found])
        return found

    def release_targets(self, owner: str, ids: Sequence[int] | None = None,
                        keep: Sequence[int] = ()) -> None:
        kept = f" AND {{}} NOT IN ({', '.join('?' * len(keep))})" if keep else ""
        with self._transaction() as conn:
            for table, key in (("targets", "id"), ("vantages", "target")):
                end = f"UPDATE {table} SET lease_owner = NULL, lease_until = NULL"  # noqa: S608
                if ids is None:
                    self._execute(conn, f"{end} WHERE lease_owner = ?{kept.format(key)}",
                                  (owner, *keep))
                else:
                    self._executemany(conn, f"{end} WHERE lease_owner = ? AND {key} = ?",
                                      [(owner, i) for i in ids])

    def due_targets(self, now: float, limit: int) -> list[Target]:
        return self._targets_where("next_probe IS NOT NULL AND next_probe <= ?", (now, limit),
                                   "next_probe LIMIT ?")

    def next_due(self, now: float) -> float | None:
        row = self._one("SELECT min(next_probe) FROM targets WHERE next_probe > ?", (now,))
        return None if row is None or row[0] is None else float(row[0])

    def last_elapsed(self, target_id: int) -> float | None:
        row = self._one("SELECT elapsed FROM results WHERE target = ? ORDER BY time DESC"
                        " LIMIT 1", (target_id,))
        return None if row is None else row[0]

    def record_probe(self, target_id: int, decide: Callable[[Target], ProbeWrite],
                     owner: str | None = None, started: float = 0.0
                     ) -> tuple[Target, ProbeWrite] | None:
        where, args = ("id = ?", [target_id]) if owner is None else (
            "id = ? AND (lease_owner = ? OR (lease_owner IS NULL AND"
            " (last_probe IS NULL OR last_probe < ?)))", [target_id, owner, started])
        with self._transaction() as conn:
            found = self._targets_where(where, args, conn=conn, lock=True)
            if not found:
                return None
            target = found[0]
            write = decide(target)
            if write.retire:
                self._delete_targets(conn, [target_id])
            else:
                self._write_probe(conn, target_id, write)
            if write.notices:
                self._enqueue(conn, write.notices)
        return target, write

    def _write_probe(self, conn: Any, target_id: int, w: ProbeWrite) -> None:
        if w.result:
            self._execute(conn, _INSERT_RESULT, (
                target_id, w.time, w.status, w.state, w.reasons, w.days_left, w.not_after,
                w.issuer, w.fingerprint, w.deployed, w.address, w.elapsed, w.not_before,
                w.vantage))
        self._execute(conn, _UPDATE_TARGET, (
            w.state, w.state, w.time, w.failures, w.notified_state, w.notified_days,
            w.notified_for, w.time, w.status, w.reasons, w.days_left, w.not_after, w.issuer,
            w.fingerprint, w.deployed, w.address, w.chain,
            w.started, w.started, w.next_probe, w.next_probe, w.next_probe, target_id))
        if w.good:
            self._execute(conn, "UPDATE targets SET last_good = ? WHERE id = ?",
                          (w.time, target_id))
        if w.keep > 0:
            self._execute(conn, _TRIM, (target_id, target_id, w.keep))

    def _delete_targets(self, conn: Any, ids: Sequence[int]) -> None:
        self._executemany(conn, "DELETE FROM results WHERE target = ?", [(i,) for i in ids])
        self._executemany(conn, "DELETE FROM vantages WHERE target = ?", [(i,) for i in ids])
        self._executemany(conn, "DELETE FROM targets WHERE id = ?", [(i,) for i in ids])

    # -- notifications ----------------------------------------------------------------

    def _enqueue(self, conn: Any, notices: Sequence[Notice]) -> None:
        self._executemany(conn, _INSERT_NOTICE, [
            (n.account, n.channel, n.destination, n.payload, n.created, n.next_attempt)
            for n in notices])

    def enqueue(self, notices: Sequence[Notice]) -> None:
        if notices:
            with self._transaction() as conn:
                self._enqueue(conn, notices)

    def claim_reminder(self, target_id: int, state_since: float | None, period: float,
                       notices: Sequence[Notice]) -> bool:
        same_state = "state_since IS NULL" if state_since is None else "state_since = ?"
        args = [period, target_id] + ([] if state_since is None else [state_since])
        with self._transaction() as conn:
            cur = self._execute(conn, "UPDATE targets SET reminded = ? WHERE id = ?"  # noqa: S608
                                f" AND {same_state} AND notified_state = state"
                                " AND (reminded IS NULL OR reminded < ?)", [*args, period])
            if cur.rowcount != 1:
                return False
            self._enqueue(conn, notices)
        return True

    def failing_targets(self, states: Sequence[str], since: float) -> list[Target]:
        marks = ", ".join("?" * len(states))
        return self._targets_where(f"state IN ({marks}) AND notified_state = state"
                                   " AND state_since <= ?", (*states, since), "id")

    def due_destinations(self, now: float, limit: int) -> list[tuple[str, str, str]]:
        rows = self._all(_DUE_DESTINATIONS, (now, limit))
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def _notifications(self, where: str, args: Sequence[Any], conn: Any = None
                       ) -> list[Notification]:
        sql = (f"SELECT {columns(NOTIFICATION_COLUMNS)} FROM notifications"  # noqa: S608
               f" WHERE {where} ORDER BY id")
        rows = self._execute(conn if conn is not None else self._connection(), sql,
                             args).fetchall()
        return [Notification(*r) for r in rows]

    def pending(self, account: str, channel: str, destination: str) -> list[Notification]:
        return self._notifications(f"account = ? AND channel = ? AND destination = ?"
                                   f" AND {_PENDING}", (account, channel, destination))

    def notifications(self, account: str | None = None) -> list[Notification]:
        if account is None:
            return self._notifications("1 = 1", ())
        return self._notifications("account = ?", (account,))

    def claim_notifications(self, now: float, limit: int, owner: str, until: float
                            ) -> list[list[Notification]]:
        out: list[list[Notification]] = []
        with self._transaction() as conn:
            rows = self._execute(conn, _CLAIM_DESTINATIONS + self._SKIP_LOCKED,
                                 (now, now, now, limit)).fetchall()
            for key in dict.fromkeys((str(a), str(c), str(d)) for a, c, d in rows):
                self._execute(conn, "UPDATE notifications SET lease_owner = ?,"  # noqa: S608
                              f" lease_until = ? WHERE {_DESTINATION} AND {_FREE}",
                              (owner, until, *key, now))
                claimed = self._notifications(f"{_DESTINATION} AND lease_owner = ?",
                                              (*key, owner), conn)
                if claimed:
                    out.append(claimed)
        return out

    def release_notifications(self, owner: str) -> None:
        with self._transaction() as conn:
            self._execute(conn, "UPDATE notifications SET lease_owner = NULL, lease_until ="
                          " NULL WHERE lease_owner = ? AND sent IS NULL AND failed IS NULL",
                          (owner,))

    def next_notification(self) -> float | None:
        row = self._one(_NEXT_NOTIFICATION)
        return None if row is None or row[0] is None else float(row[0])

    def hold_notifications(self, ids: Sequence[int], until: float) -> None:
        with self._transaction() as conn:
            self._executemany(conn, "UPDATE notifications SET next_attempt = ?,"
                              " lease_owner = NULL, lease_until = NULL WHERE id = ?",
                              [(until, i) for i in ids])

    def mark_sent(self, ids: Sequence[int], when: float) -> None:
        with self._transaction() as conn:
            self._executemany(conn, "UPDATE notifications SET sent = ?,"
                              " attempts = attempts + 1, lease_owner = NULL, lease_until = NULL"
                              " WHERE id = ?", [(when, i) for i in ids])

    def mark_failed(self, ids: Sequence[int], retry_at: float, error: str, retries: int,
                    now: float) -> None:
        with self._transaction() as conn:
            self._executemany(
                conn, "UPDATE notifications SET attempts = attempts + 1, next_attempt = ?,"
                " last_error = ?, lease_owner = NULL, lease_until = NULL,"
                " failed = CASE WHEN attempts + 1 >= ? THEN ? END WHERE id = ?",
                [(retry_at, error, retries, now, i) for i in ids])

    def notification_counts(self) -> tuple[int, int]:
        row = self._one("SELECT count(*) FROM notifications WHERE sent IS NULL"
                        " AND failed IS NULL")
        failed = self._one("SELECT count(*) FROM notifications WHERE sent IS NULL"
                           " AND failed IS NOT NULL")
        return (int(row[0]) if row else 0), (int(failed[0]) if failed else 0)

