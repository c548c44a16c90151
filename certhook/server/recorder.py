"""From a probe's result to what the store writes: the auditor's recording side.

Each probe's result is evaluated (``evaluate.py``) inside the store's
transaction (``Store.record_probe``: no other writer between the read of
the target and the write), and written with the target's new state, its
next probe and the notices it calls for. A target probed from vantages
(``vantage.py``) is recorded per vantage: the vantage's own verdict, then
the target's, the worst of its vantages' (``Store.record_vantage_probe``);
:meth:`Recorder.find_silent` writes the finding of a vantage that stopped
reporting. A target nobody names and nobody reaches is retired here.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Callable

from certhook.probe.lifetime import probe_interval
from certhook.server import metrics, store
from certhook.server.chain import summarize
from certhook.server.config import ServerConfig
from certhook.server.evaluate import WAITING, Evaluation, TargetState, evaluate
from certhook.server.store.records import SILENT
from certhook.server.vantage import is_silent, merge, silent_write, told

__all__ = ["POLL", "REFUSED", "WAITING_RECHECK", "Recorder", "backoff"]

log = logging.getLogger("certhook.audit")

#: Seconds between looks for due targets when nothing wakes the scheduler:
#: picks up ``certhook recheck`` and submissions made by another process (gunicorn).
POLL = 2.0
#: Seconds between probes while a renewed certificate is awaited (``waiting``).
WAITING_RECHECK = 60.0
#: How the reason of a probe the SSRF guard refused starts.
REFUSED = "not probed: "
_SILENT_BATCH = 256  # silent vantages read at once
_SILENT_BUDGET = 1.0  # seconds a look for silent vantages may go on while it finds more


def backoff(config: ServerConfig, failures: int) -> float:
    """Seconds until the next probe of a target failing ``failures`` times in a row.

    ``retry_interval`` until the failure is confirmed (``failure_threshold``),
    then doubling with each further failure, up to ``retry_max`` (and never
    past ``interval``).
    """
    over = min(max(0, failures - config.failure_threshold), 30)
    cap = min(max(config.retry_max, config.retry_interval), config.interval)
    return min(config.retry_interval * 2.0 ** over, cap)


class Recorder:
    """Records the probes of one node: ``db()`` is its store, ``clock()`` its time;
    ``on_notice()`` is called after a write that queued notices."""

    def __init__(self, config: ServerConfig, node: str, db: Callable[[], store.Store],
                 clock: Callable[[], float] = time.time,
                 on_notice: Callable[[], None] | None = None) -> None:
        self.config = config
        self.node = node
        self._db = db
        self._clock = clock
        self._on_notice = on_notice
        self.dropped = 0  # results not recorded: the lease had passed to another node
        self.next_silent = 0.0  # when to look for vantages that stopped reporting

    def record(self, target_id: int, result: Any, started: float, took: float) -> None:
        cfg = self.config
        now = self._clock()
        seen: list[tuple[TargetState, Evaluation]] = []

        def decide(row: store.Target) -> store.ProbeWrite:
            # inside the store's transaction: no other writer between this read and the write
            before = _state_of(row)
            ev = evaluate(before, result, now, cfg.grace, cfg.failure_threshold,
                          cfg.expiry_notices)
            seen.append((before, ev))
            if _retire(cfg, row, ev, now):
                return self._retire(row, ev, now)
            return self._write(row, ev, result, now, started, took)

        done = self._db().record_probe(target_id, decide, owner=self.node,
                                         started=started)
        self._recorded(target_id, done, seen)

    def record_vantage(self, target_id: int, result: Any, started: float,
                        took: float) -> None:
        """Record a probe made from this node's vantage: the vantage's own verdict (its
        failures confirmed as for a target seen from one place), and the target's, the
        worst of its vantages' (``vantage.py``)."""
        cfg, vantage = self.config, self.config.vantage
        now = self._clock()
        seen: list[tuple[TargetState, Evaluation]] = []

        def decide(row: store.Target, rows: list[store.Vantage]) -> store.ProbeWrite:
            base = _state_of(row)
            mine = next(v for v in rows if v.vantage == vantage)  # the lease was checked
            leaf = getattr(result, "leaf", None)
            notified_for, notified_days = told(
                rows, mine, getattr(leaf, "fingerprint_sha256", None) if leaf else None)
            ev = evaluate(replace(base, state=mine.state, failures=mine.failures,
                                  notified_for=notified_for, notified_days=notified_days),
                          result, now, cfg.grace, cfg.failure_threshold, cfg.expiry_notices)
            address = getattr(result, "address", None)
            own = store.VantageWrite(
                vantage, ev.state, ev.failures, ev.status, "\n".join(ev.reasons),
                ev.served_fingerprint, None if ev.deployed is None else int(ev.deployed),
                ev.days_left, ev.not_after, None if address is None else str(address), now,
                self.next_probe(ev, now), ",".join(sorted(ev.notified_days)),
                ev.notified_for)
            merged, writes, nxt = self._merge(base, ev, rows, now, own)
            seen.append((base, merged))
            if _retire(cfg, row, ev, now):
                return self._retire(row, ev, now)
            write = self._write(row, merged, result, now, started, took)
            return replace(write, next_probe=nxt, vantage=vantage, vantages=tuple(writes))

        done = self._db().record_vantage_probe(target_id, decide, vantage, self.node, started)
        self._recorded(target_id, done, seen)

    def _merge(self, base: TargetState, ev: Evaluation, rows: Sequence[store.Vantage],
               now: float, own: store.VantageWrite | None = None
               ) -> tuple[Evaluation, list[store.VantageWrite], float]:
        """The target's evaluation from its vantages (``ev`` is the latest probe's, or the
        target's own when no probe ran), the vantage rows to write (``own``, and those
        found silent now) and the target's next probe (its vantages' earliest)."""
        mine = own.vantage if own is not None else None
        silent = [silent_write(v) for v in rows if v.vantage != mine and v.status != SILENT
                  and is_silent(v, now, self.config.vantage_silent)]
        views: dict[str, Any] = {v.vantage: v for v in rows}
        views.update({w.vantage: w for w in silent})
        if own is not None:
            views[own.vantage] = own
        writes = ([own] if own is not None else []) + silent
        nxt = [float(v.next_probe) for v in views.values()
               if v.next_probe is not None and v.status != SILENT]
        soonest = min(nxt) if nxt else now + self.config.interval
        m = merge(base, list(views.values()))
        if m is None:  # nothing known from any vantage yet: the probe's verdict stands
            return ev, writes, soonest
        notices = [n for n in ev.notices if n.get("kind") == "expiry"]
        if m.notice is not None:
            notices.append(m.notice)
        failures = max([ev.failures, *(v.failures for v in views.values())])
        return replace(ev, status=m.status, reasons=m.reasons, state=m.state,
                       failures=failures, deployed=m.deployed, days_left=m.days_left,
                       not_after=m.not_after, notified_state=m.notified_state,
                       not_deployed=m.not_deployed, notices=notices), writes, soonest

    def find_silent(self, db: store.Store, now: float) -> None:
        """Find the vantages that stopped reporting (``vantage_silent`` past a probe due
        from them): each is a finding on its target, written once, by one node. A look
        goes on while it finds more, for up to :data:`_SILENT_BUDGET` seconds (a place
        whose node died leaves many targets at once); then the next look is soon."""
        if now < self.next_silent:
            return
        every = min(30.0, self.config.vantage_silent / 2)
        deadline = time.monotonic() + _SILENT_BUDGET
        while True:
            found = db.silent_vantages(now - self.config.vantage_silent, now, _SILENT_BATCH)
            written = sum(self._mark_silent(db, target_id, now)
                          for target_id in dict.fromkeys(target for target, _ in found))
            if len(found) < _SILENT_BATCH or not written:
                break
            if time.monotonic() >= deadline:
                every = POLL
                break
        self.next_silent = now + every

    def _mark_silent(self, db: store.Store, target_id: int, now: float) -> bool:
        """Write the finding of the silent vantages of one target; whether it did."""
        seen: list[tuple[TargetState, Evaluation]] = []

        def decide(row: store.Target, rows: list[store.Vantage]) -> store.ProbeWrite | None:
            base = _state_of(row)
            merged, writes, nxt = self._merge(base, _as_evaluation(row, base), rows, now)
            if not writes:  # reported meanwhile, or found silent by another node
                return None
            seen.append((base, merged))
            for w in writes:
                log.warning("%s %s:%d/%s: %s", row.account, row.domain, row.port,
                            row.protocol, w.reasons)
            write = self._write(row, merged, None, now, now, 0.0)
            return replace(write, next_probe=nxt, address=row.address, good=False, keep=0,
                           result=False, vantages=tuple(writes))

        done = db.record_vantage_probe(target_id, decide)
        if done is not None:
            self._recorded(target_id, done, seen)
        return done is not None

    def _recorded(self, target_id: int,
                  done: tuple[store.Target, store.ProbeWrite] | None,
                  seen: list[tuple[TargetState, Evaluation]]) -> None:
        """Log what a write did (a state change, a dropped result) and wake the notifier."""
        if done is None:  # removed meanwhile, or another node took it over after the lease
            if seen:
                return
            self.dropped += 1
            metrics.RESULTS_DROPPED.inc()
            log.warning("node %s: result for target %d dropped: removed meanwhile, or its"
                        " lease (%gs) ran out and another node probes it", self.node,
                        target_id, self.config.lease)
            return
        row, write = done
        before, ev = seen[-1]
        if write.retire:
            return
        if ev.state != before.state:
            log.info("%s %s:%d/%s: %s -> %s", row.account, row.domain, row.port,
                     row.protocol, before.state, ev.state)
        if ev.notices and self._on_notice is not None:
            self._on_notice()

    def next_probe(self, ev: Evaluation, now: float) -> float:
        """When to probe next after evaluation ``ev`` at ``now``."""
        cfg = self.config
        # A refused IP literal stays refused: no retries for it.
        settled = ev.status == "ok" or any(r.startswith(REFUSED) for r in ev.reasons)
        # A certificate is probed at least lifetime / 160 apart (hourly for 160 h).
        interval = probe_interval(cfg.interval, ev.lifetime_seconds)
        base = interval if settled else min(backoff(cfg, ev.failures), interval)
        delay = base * (1.0 + random.uniform(-cfg.jitter, cfg.jitter))
        nxt = now + max(delay, 0.0)
        if ev.state == WAITING:  # look again soon: the reload may come any moment
            nxt = min(nxt, now + WAITING_RECHECK)
        if ev.recheck_at is not None:
            nxt = min(nxt, ev.recheck_at + 1.0)
        return nxt

    def _write(self, row: store.Target, ev: Evaluation, result: Any, now: float,
               started: float, took: float) -> store.ProbeWrite:
        """What a probe writes: its result, the target's new state, and its notices."""
        from certhook.server.notify import notices

        address = getattr(result, "address", None)
        queued: list[store.Notice] = []
        if _muted(row, now):  # still probed and shown; the notices are dropped
            for notice in ev.notices:
                log.info("%s %s:%d/%s muted: no notice %s", row.account, row.domain,
                         row.port, row.protocol, notice.get("kind", notice.get("state")))
        else:
            for notice in ev.notices:
                payload = {
                    **notice, "account": row.account, "domain": row.domain,
                    "port": row.port, "protocol": row.protocol, "status": ev.status,
                    "reasons": ev.reasons, "days_left": ev.days_left,
                    "not_after": ev.not_after, "seconds_left": ev.seconds_left,
                    "lifetime_seconds": ev.lifetime_seconds, "issuer": ev.issuer,
                    "served_fingerprint": ev.served_fingerprint,
                    "expected_fingerprint": row.expected_fingerprint, "time": now,
                }
                queued += notices(self.config, row.account, payload, now)
        keep = self.config.history_keep
        return store.ProbeWrite(
            time=now, started=started, status=ev.status, state=ev.state,
            reasons="\n".join(ev.reasons), days_left=ev.days_left, not_after=ev.not_after,
            issuer=ev.issuer, fingerprint=ev.served_fingerprint,
            deployed=None if ev.deployed is None else int(ev.deployed),
            address=None if address is None else str(address), elapsed=took,
            failures=ev.failures, notified_state=ev.notified_state,
            notified_days=",".join(sorted(ev.notified_days)), notified_for=ev.notified_for,
            next_probe=self.next_probe(ev, now), good=ev.status in _GOOD,
            keep=keep if keep > 0 and random.random() < 0.05 else 0,
            notices=tuple(queued), not_before=_not_before(result), chain=summarize(result))

    def _retire(self, row: store.Target, ev: Evaluation, now: float) -> store.ProbeWrite:
        """Remove a target nobody names and that keeps failing, with one notice."""
        from certhook.server.notify import notices
        from certhook.server.queries import iso

        days = self.config.retire_after / 86400
        good = row.last_good
        reason = (f"retired: no submission has named it for {days:g} days (since"
                  f" {iso(row.last_submitted)}) and no probe has reached it since"
                  f" {iso(good) if good else 'it was added'}; a submission naming it adds it"
                  " back")
        log.warning("%s %s:%d/%s %s", row.account, row.domain, row.port, row.protocol, reason)
        queued: list[store.Notice] = []
        if not _muted(row, now):
            queued = notices(self.config, row.account, {
                "kind": "retired", "state": "retired", "previous": row.state,
                "account": row.account, "domain": row.domain, "port": row.port,
                "protocol": row.protocol, "status": ev.status,
                "reasons": [reason, *ev.reasons], "time": now,
            }, now)
        return store.ProbeWrite(
            time=now, started=now, status=ev.status, state=ev.state, reasons="",
            days_left=None, not_after=None, issuer=None, fingerprint=None, deployed=None,
            address=None, elapsed=0.0, failures=ev.failures, notified_state=None,
            notified_days="", notified_for=None, next_probe=now, good=False,
            notices=tuple(queued), retire=True)


# Probe outcomes that reached a usable certificate; the others count toward retirement.
_GOOD = ("ok", "warning")


def _not_before(result: Any) -> float | None:
    leaf = getattr(result, "leaf", None)
    return None if leaf is None else float(leaf.not_valid_before_utc.timestamp())


def _state_of(row: store.Target) -> TargetState:
    """What the evaluation needs of a target's row."""
    return TargetState(
        state=row.state, failures=row.failures, notified_state=row.notified_state,
        notified_days=frozenset(x for x in row.notified_days.split(",") if x),
        notified_for=row.notified_for, expected_fingerprint=row.expected_fingerprint,
        expected_since=row.expected_since, last_event=row.last_event,
    )


def _as_evaluation(row: store.Target, state: TargetState) -> Evaluation:
    """The target's last verdict as an evaluation: what stands when no probe ran."""
    return Evaluation(
        status=row.status or "unknown", reasons=row.reasons.splitlines(), state=row.state,
        failures=row.failures, deployed=None if row.deployed is None else bool(row.deployed),
        served_fingerprint=row.served_fingerprint, days_left=row.days_left,
        not_after=row.not_after, issuer=row.issuer, notified_state=row.notified_state,
        notified_days=state.notified_days, notified_for=row.notified_for)


def _muted(row: store.Target, now: float) -> bool:
    return row.muted_until is not None and row.muted_until > now


def _retire(config: ServerConfig, row: store.Target, ev: Evaluation, now: float) -> bool:
    """Whether a target is retired: no submission has named it for ``retire_after``
    (a submission naming it resets that clock) and no probe has reached it for as
    long (a good probe resets that one), and this probe failed too."""
    horizon = now - config.retire_after
    good = row.last_good if row.last_good is not None else row.created
    return (config.retire_after > 0 and ev.status not in _GOOD
            and row.last_submitted <= horizon and good <= horizon)
