"""Vantage points (issue 12): each target probed from each named vantage, in portable SQL.

A target probed from vantages has one row per vantage in ``vantages``, with
its own schedule (``next_probe``), lease and latest verdict; the target's
own row carries the merged verdict (``server/vantage.py``) and, as its
``next_probe``, the earliest of its vantages'. Plain claims
(:meth:`AuditMixin.claim_targets`) skip such targets: only a node of the
vantage claims its row. Lock order, as everywhere: the target's row, then
its vantages'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, Callable

from certhook.server.store.records import ProbeWrite, Target, Vantage, VantageWrite
from certhook.server.store.schema import NOT_SILENT
from certhook.server.store.sql_audit import AuditMixin
from certhook.server.store.sql_base import columns

__all__ = ["VANTAGE_COLUMNS", "VantagesMixin"]

VANTAGE_COLUMNS = tuple(f.name for f in fields(Vantage))
_FREE = "(lease_until IS NULL OR lease_until <= ?)"
# The verdict of one vantage; a result written ends its lease and sets its next probe,
# unless a submission or recheck during the probe asked for an earlier one.
_WRITE = ("UPDATE vantages SET state = ?, failures = ?, status = ?, reasons = ?,"
          " fingerprint = ?, deployed = ?, days_left = ?, not_after = ?, address = ?")
_RESULT = (", time = ?, notified_days = ?, notified_for = ?, lease_owner = NULL,"
           " lease_until = NULL, next_probe = CASE"
           " WHEN next_probe > ? AND next_probe < ? THEN next_probe ELSE ? END")
_WHERE = " WHERE target = ? AND vantage = ?"
# A submission naming a target probed from vantages. The target's list is its own (set
# when it is added, changed only by sync_vantages at a node's start, with the rows): a
# missing row of a vantage it lists is added (CAST: a type for PostgreSQL), and every
# row of the target is brought forward to the submission's probe.
UPSERT_VANTAGE = """
INSERT INTO vantages (target, vantage, created, next_probe)
SELECT id, CAST(? AS text), CAST(? AS double precision), CAST(? AS double precision)
FROM targets WHERE account = ? AND domain = ? AND port = ? AND protocol = ?
    AND next_probe IS NOT NULL AND (',' || vantages || ',') LIKE ('%,' || CAST(? AS text) || ',%')
ON CONFLICT (target, vantage) DO NOTHING
"""
BRING_FORWARD = """
UPDATE vantages SET next_probe = ? WHERE (next_probe IS NULL OR next_probe > ?)
    AND target = (SELECT id FROM targets
                  WHERE account = ? AND domain = ? AND port = ? AND protocol = ?)
"""


class VantagesMixin(AuditMixin):
    """The vantages of targets: their rows, claims, and the merged write."""

    def _vantage_rows(self, conn: Any, target_id: int, lock: bool = False) -> list[Vantage]:
        sql = (f"SELECT {columns(VANTAGE_COLUMNS)} FROM vantages"  # noqa: S608
               " WHERE target = ? ORDER BY vantage" + self._COLLATE)
        if lock:
            sql += self._FOR_UPDATE
        return [Vantage(*r) for r in self._execute(conn, sql, (target_id,)).fetchall()]

    def vantages(self, target_id: int) -> list[Vantage]:
        return self._vantage_rows(self._connection(), target_id)

    def sync_vantages(self, plan: Callable[[str, str, int, str], Sequence[str]] | None,
                      now: float) -> int:
        # it locks every probed target: a batch locking some of them crosses it, run again
        return self._retrying(lambda: self._sync_vantages(plan, now))

    def _sync_vantages(self, plan: Callable[[str, str, int, str], Sequence[str]] | None,
                       now: float) -> int:
        changed = 0
        if plan is None and self._one("SELECT 1 FROM targets WHERE vantages <> '' LIMIT 1"
                                      ) is None:
            return 0  # none named, none kept: nothing to read
        with self._transaction() as conn:
            targets = self._execute(conn, "SELECT id, account, domain, port, protocol,"  # noqa: S608
                                    " vantages, next_probe FROM targets WHERE next_probe"
                                    " IS NOT NULL ORDER BY id" + self._FOR_UPDATE).fetchall()
            have: dict[int, set[str]] = {}
            for target, name in self._execute(conn, "SELECT target, vantage FROM vantages"
                                              ).fetchall():
                have.setdefault(int(target), set()).add(str(name))
            for target_id, account, domain, port, protocol, listed, next_probe in targets:
                want = tuple(dict.fromkeys(plan(account, domain, port, protocol) if plan
                                           else ()))
                old = have.get(target_id, set())
                add = [v for v in want if v not in old]
                gone = sorted(old - set(want))
                if listed == ",".join(want) and not add and not gone:
                    continue
                changed += 1
                soon = min(now, next_probe) if add else next_probe
                self._execute(conn, "UPDATE targets SET vantages = ?, next_probe = ?"
                              " WHERE id = ?", (",".join(want), soon, target_id))
                self._executemany(conn, "INSERT INTO vantages (target, vantage, created,"
                                  " next_probe) VALUES (?, ?, ?, ?)",
                                  [(target_id, v, now, now) for v in add])
                self._executemany(conn, "DELETE FROM vantages WHERE target = ? AND"
                                  " vantage = ?", [(target_id, v) for v in gone])
        return changed

    def claim_vantages(self, vantage: str, now: float, limit: int, owner: str,
                       until: float) -> list[Target]:
        with self._transaction() as conn:
            rows = self._execute(
                conn, "SELECT id, target FROM vantages WHERE vantage = ? AND next_probe"  # noqa: S608
                f" IS NOT NULL AND next_probe <= ? AND {_FREE} ORDER BY next_probe, id"
                " LIMIT ?" + self._SKIP_LOCKED, (vantage, now, now, limit)).fetchall()
            if not rows:
                return []
            self._executemany(conn, "UPDATE vantages SET lease_owner = ?, lease_until = ?"
                              " WHERE id = ?", [(owner, until, r[0]) for r in rows])
            order = [int(r[1]) for r in rows]
            marks = ", ".join("?" * len(order))
            found = {t.id: t for t in self._targets_where(f"id IN ({marks})", order,
                                                          conn=conn)}
        return [found[i] for i in order if i in found]

    def silent_vantages(self, due_before: float, now: float, limit: int
                        ) -> list[tuple[int, str]]:
        rows = self._all(f"SELECT target, vantage FROM vantages WHERE {NOT_SILENT}"  # noqa: S608
                         f" AND next_probe <= ? AND {_FREE} ORDER BY next_probe LIMIT ?",
                         (due_before, now, limit))
        return [(int(t), str(v)) for t, v in rows]

    def record_vantage_probe(
            self, target_id: int,
            decide: Callable[[Target, list[Vantage]], ProbeWrite | None],
            vantage: str | None = None, owner: str | None = None, started: float = 0.0,
    ) -> tuple[Target, ProbeWrite] | None:
        with self._transaction() as conn:
            found = self._targets_where("id = ?", (target_id,), conn=conn, lock=True)
            if not found:
                return None
            target = found[0]
            rows = self._vantage_rows(conn, target_id, lock=True)
            if vantage is not None and owner is not None:
                mine = next((r for r in rows if r.vantage == vantage), None)
                if mine is None or not (mine.lease_owner == owner or (
                        mine.lease_owner is None and (mine.time is None or mine.time < started))):
                    return None  # the row is gone, or its lease is another node's now
            write = decide(target, rows)
            if write is None:
                return None
            if write.retire:
                self._delete_targets(conn, [target_id])
            else:
                self._write_probe(conn, target_id, write)
                for w in write.vantages:
                    self._write_vantage(conn, target_id, w, write.started)
            if write.notices:
                self._enqueue(conn, write.notices)
        return target, write

    def _write_vantage(self, conn: Any, target_id: int, w: VantageWrite,
                       started: float) -> None:
        args: list[Any] = [w.state, w.failures, w.status, w.reasons, w.fingerprint, w.deployed,
                           w.days_left, w.not_after, w.address]
        sql = _WRITE
        if w.time is not None:
            sql += _RESULT
            args += [w.time, w.notified_days, w.notified_for, started, w.next_probe,
                     w.next_probe]
        self._execute(conn, sql + _WHERE, [*args, target_id, w.vantage])
