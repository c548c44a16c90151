"""The auditor: probes every target from outside, on a schedule, in a thread pool.

A scheduler thread picks the targets whose ``next_probe`` has come (a new
submission or ``certhook recheck`` sets it to "now"; a submission wakes the
scheduler, and it looks on its own every :data:`POLL` seconds), hands them
to the pool, and goes back to waiting; it never runs on the listeners'
threads. Each result is evaluated (``evaluate.py``), stored with the
target's new state, and any notices are queued for the notifier, all in one
transaction.

Two lanes, so that slow targets cannot delay healthy ones. A target that
accepts a connection and then stays silent (a "tarpit") holds its thread
for the whole ``probe_timeout``; with one lane of 16 threads, ten per cent
of 1,000 targets took the healthy ones' audit from 4 s to 66 s. Here
``concurrency`` is the fast lane: probes at work. A probe still running
after :data:`FAST_BUDGET` seconds (a TLS handshake takes far less, even
across the world) moves to the slow lane, whose threads only wait, and its
fast slot goes to the next target; it keeps its full ``probe_timeout`` and
its result counts as any other. A target whose last probe was slow starts
in the slow lane. The slow lane holds up to :data:`SLOW_PER_FAST` times
``concurrency`` probes (threads and sockets stay bounded); when it is full,
a slow probe keeps its fast slot. Failing targets back off:
``retry_interval``, doubling once the failure is confirmed, up to
``retry_max``. ``bench/audit.py`` measures it.

Every probe goes through the SSRF guard (``ssrf.py``): the probe calls it
with each resolved address just before connecting.

Several nodes on one database (``docs/server.md``, "Several nodes"): the
scheduler *claims* due targets (``Store.claim_targets``), leasing them to
this node for ``lease`` seconds, and its result is recorded only while the
lease is still its own; a node that dies loses its targets to the others
when the leases end. ``_inflight`` still keeps one probe per target and the
lanes within this process.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable

from certhook.errors import StoreUnavailable
from certhook.probe.lifetime import probe_interval
from certhook.server import metrics, store
from certhook.server.chain import summarize
from certhook.server.config import ServerConfig
from certhook.server.evaluate import WAITING, Evaluation, TargetState, evaluate
from certhook.server.outage import Outage, release_leases
from certhook.server.ssrf import forbidden_reason, make_guard
from certhook.server.store.records import SILENT
from certhook.server.vantage import is_silent, merge, silent_write
from certhook.server.worker import Worker

__all__ = ["FAST_BUDGET", "POLL", "SLOW_PER_FAST", "Auditor", "ProbeFunction", "backoff",
           "default_node"]

log = logging.getLogger("certhook.audit")

ProbeFunction = Callable[[Any, Any], Any]
#: Seconds between looks for due targets when nothing wakes the scheduler:
#: picks up ``certhook recheck`` and submissions made by another process (gunicorn).
POLL = 2.0
#: Seconds a probe may hold a fast slot; then it goes on in the slow lane.
FAST_BUDGET = 0.5
#: The slow lane's size, per fast slot: its probes wait on silent peers (one
#: thread and one socket each), they do not work.
SLOW_PER_FAST = 16
#: Seconds between probes while a renewed certificate is awaited (``waiting``).
WAITING_RECHECK = 60.0
_REFUSED = "not probed: "
_FAST, _SLOW = "fast", "slow"
_MAX_FETCH = 1 << 16  # due rows looked at in one round, at most
_SILENT_BATCH = 256  # silent vantages read at once
_SILENT_BUDGET = 1.0  # seconds a look for silent vantages may go on while it finds more


class _Flight:
    """A probe in flight: its lane and when it started (monotonic)."""

    __slots__ = ("lane", "started")

    def __init__(self, lane: str, started: float) -> None:
        self.lane, self.started = lane, started


def backoff(config: ServerConfig, failures: int) -> float:
    """Seconds until the next probe of a target failing ``failures`` times in a row.

    ``retry_interval`` until the failure is confirmed (``failure_threshold``),
    then doubling with each further failure, up to ``retry_max`` (and never
    past ``interval``).
    """
    over = min(max(0, failures - config.failure_threshold), 30)
    cap = min(max(config.retry_max, config.retry_interval), config.interval)
    return min(config.retry_interval * 2.0 ** over, cap)


def default_node() -> str:
    """A node name unique to this process: ``hostname:pid:random``."""
    import os
    import secrets
    import socket

    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _real_probe(target: Any, options: Any) -> Any:
    from certhook.probe import probe

    return probe(target, options)


class Auditor(Worker):
    """Schedules and runs probes; ``probe_fn(Target, ProbeOptions)`` defaults to the probe.

    ``wake()`` after a submission is committed looks for due targets at once.
    """

    thread_name = "certhook-audit"

    def __init__(
        self,
        config: ServerConfig,
        probe_fn: ProbeFunction | None = None,
        on_notice: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        node: str = "",
    ) -> None:
        self.config = config
        self.node = node or config.node or default_node()
        self._probe = probe_fn or _real_probe
        self._on_notice = on_notice
        self._clock = clock
        fast = max(1, config.concurrency)
        self._capacity = {_FAST: fast, _SLOW: SLOW_PER_FAST * fast}
        self._pool = ThreadPoolExecutor(fast + self._capacity[_SLOW], "certhook-probe")
        self._inflight: dict[int, _Flight] = {}
        self._backlog = 0  # due targets left waiting for a full lane in the last round
        self.dropped = 0  # results not recorded: the lease had passed to another node
        self._took: dict[int, float] = {}  # target -> seconds its last probe took
        self._unrecorded: set[int] = set()  # probed under our lease, the result not recorded
        self._lock = threading.Lock()
        self._store: store.Store | None = None
        self._store_lock = threading.Lock()
        self._guard = make_guard(config.allow_networks)
        self.probes = 0
        self.moved = 0  # probes moved from the fast lane to the slow one
        self.outage = Outage("auditor", log)
        self._next_silent = 0.0  # when to look for vantages that stopped reporting
        self._synced = False  # the targets given their accounts' vantages at start
        super().__init__()

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._store_lock:
            db, self._store = self._store, None
        if db is not None:
            # probes cancelled unstarted: the other nodes need not wait for the lease
            release_leases(f"auditor of node {self.node}",
                           lambda: db.release_targets(self.node), log)
            db.close()

    def _db(self) -> store.Store:
        """The store, opened on first use (each thread gets its own connection)."""
        with self._store_lock:  # not self._lock: _took_for reads the store under it
            if self._store is None:
                self._store = store.open_store(self.config.db)
            return self._store

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = POLL
            try:
                wait = self._schedule()
                self.outage.ok()
            except StoreUnavailable as exc:  # PostgreSQL gone: pause, no traceback per try
                wait = self.outage.failed(exc)
            except Exception:
                log.exception("scheduler")
            self._wake.wait(max(0.0, min(wait, POLL)))

    def _rooms(self, now: float) -> tuple[dict[str, int], float]:
        """Move fast probes past their budget to the slow lane while it has room; the
        free slots per lane, and the seconds until the next fast probe runs out."""
        with self._lock:
            used = {_FAST: 0, _SLOW: 0}
            for flight in self._inflight.values():
                used[flight.lane] += 1
            over = sorted((f for f in self._inflight.values() if f.lane == _FAST),
                          key=lambda f: f.started)
            next_move = POLL
            for flight in over:
                if now - flight.started < FAST_BUDGET:
                    next_move = flight.started + FAST_BUDGET - now
                    break
                if used[_SLOW] >= self._capacity[_SLOW]:
                    break
                flight.lane = _SLOW
                used[_FAST] -= 1
                used[_SLOW] += 1
                self.moved += 1
            rooms = {lane: cap - used[lane] for lane, cap in self._capacity.items()}
        return rooms, next_move

    def _schedule(self) -> float:
        """Claim due targets for the lanes with room and start them; the seconds until
        the next look. A claim leases the targets to this node (``lease``): no other
        node probes them meanwhile, and this node's result counts only if the lease is
        still its own when it is recorded (``Store.record_probe``)."""
        db = self._db()
        now = self._clock()
        if not self._synced:  # the vantages named in this node's configuration
            cfg = self.config
            changed = db.sync_vantages(cfg.vantages_for if cfg.uses_vantages else None, now)
            if changed:
                log.info("vantages: %d targets given their account's vantages", changed)
            self._synced = True
        with self._lock:
            unrecorded, self._unrecorded = self._unrecorded, set()
        if unrecorded:  # probed, not recorded (the database was away): claimable again now,
            try:        # not when their lease ends
                db.release_targets(self.node, sorted(unrecorded))
            except BaseException:
                with self._lock:
                    self._unrecorded |= unrecorded
                raise
        room, next_move = self._rooms(time.monotonic())
        held: list[int] = []  # claimed, but their lane is full: released at the end
        try:
            next_move = self._claim(lambda limit: db.claim_targets(
                now, limit, self.node, now + self.config.lease), room, held, next_move)
            if self.config.vantage:  # the targets probed from this node's vantage
                next_move = self._claim(lambda limit: db.claim_vantages(
                    self.config.vantage, now, limit, self.node, now + self.config.lease),
                    room, held, next_move)
        finally:
            if held:
                db.release_targets(self.node, held)
        if self.config.uses_vantages:
            self._find_silent(db, now)
        self._backlog = len(held)
        nxt = db.next_due(now)
        due = POLL if nxt is None else nxt - now
        return min(due, next_move)

    def _claim(self, claim: Callable[[int], list[store.Target]], room: dict[str, int],
               held: list[int], next_move: float) -> float:
        """Claim due targets with ``claim(limit)`` while the lanes have room and start
        them; those claimed for a full lane go to ``held``. The seconds until the next
        fast probe's budget is spent."""
        looked = 0
        while room[_FAST] > 0 or room[_SLOW] > 0:  # only the fast lane looks further
            # as many as the lanes can start: a target goes to the slow lane only if
            # its last probe was slow, so the slow lane's room counts up to the
            # slow targets known (a claim held back costs two writes)
            with self._lock:
                slow = sum(1 for took in self._took.values() if took >= FAST_BUDGET)
            limit = room[_FAST] + min(room[_SLOW], slow)
            if limit <= 0:
                break
            rows = claim(limit)
            looked += len(rows)
            for row in rows:
                lane = self._dispatch(row, room)
                if lane == _FAST:  # look again when its budget is spent
                    next_move = min(next_move, FAST_BUDGET)
                elif lane is None:
                    held.append(row.id)
            # Due targets waiting for a full lane stay claimed while the claim looks
            # further (for the lane with room), boundedly; then they are released.
            if room[_FAST] <= 0 or len(rows) < limit or looked >= _MAX_FETCH:
                break
        return next_move

    def _took_for(self, target_id: int) -> float:
        took = self._took.get(target_id)
        if took is None:
            # how long its last probe took: read once per target, then kept in memory
            took = self._took[target_id] = float(self._db().last_elapsed(target_id) or 0.0)
        return took

    def _dispatch(self, row: store.Target, room: dict[str, int]) -> str | None:
        """Start a probe of ``row`` in its lane if it has room: the lane, or None when
        the target waits for a full lane ("" when it is in flight already)."""
        target_id = row.id
        with self._lock:
            lane = _SLOW if self._took_for(target_id) >= FAST_BUDGET else _FAST
            if target_id in self._inflight:
                return ""
            if room[lane] <= 0:
                return None
            room[lane] -= 1
            self._inflight[target_id] = _Flight(lane, time.monotonic())
        self._pool.submit(self._audit, target_id, row.domain, row.port, row.protocol,
                          row.acme_server, row.renew_before, bool(row.vantages))
        return lane

    def _audit(self, target_id: int, domain: str, port: int, protocol: str,
               acme_server: str | None = None, renew_before: int | None = None,
               vantaged: bool = False) -> None:
        metrics.PROBES_IN_FLIGHT.inc()
        try:
            started, begun = self._clock(), time.monotonic()
            result = self._run_probe(domain, port, protocol, acme_server, renew_before)
            # the time it held its thread, whatever the result says: it picks the lane
            took = time.monotonic() - begun
            with self._lock:
                self._took[target_id] = took
            metrics.PROBES.inc(str(result.status))
            metrics.PROBE_DURATION.observe(took)
            if vantaged:
                self._record_vantage(target_id, result, started, took)
            else:
                self._record(target_id, result, started, took)
        except StoreUnavailable as exc:  # not recorded: it stays due, probed again later
            self.outage.failed(exc)
            with self._lock:
                self._unrecorded.add(target_id)
        except Exception:
            log.exception("auditing %s:%s", domain, port)
            with self._lock:
                self._unrecorded.add(target_id)
        finally:
            metrics.PROBES_IN_FLIGHT.dec()
            with self._lock:
                self._inflight.pop(target_id, None)
            self._wake.set()

    def _now(self) -> datetime:
        """The auditor's clock as the probe's: the verdict is made at the server's time."""
        return datetime.fromtimestamp(self._clock(), timezone.utc)

    def _run_probe(self, domain: str, port: int, protocol: str,
                   acme_server: str | None = None, renew_before: int | None = None) -> Any:
        start = time.monotonic()
        literal = forbidden_reason(domain, self.config.allow_networks)
        if literal is not None and literal != "not an IP address":
            # An IP literal the guard refuses: no need to ask the probe.
            return _unknown(f"{_REFUSED}{literal}", start)
        from certhook.probe import ProbeOptions, Target

        options = ProbeOptions(
            timeout=self.config.probe_timeout, warn=self.config.warn, crit=self.config.crit,
            ca_file=self.config.ca_file, allow_address=self._guard, clock=self._now,
            # ARI and CRL: their fetches go through the same guard (probe/fetch.py);
            # ARI windows and CRLs are cached in this process (probe/ari.py, crl.py).
            ari_directory=acme_server if self.config.ari is not None else None,
            ari_issuers=self.config.ari or (), check_crl=self.config.crl,
            renew_before=renew_before,  # the lineage's renew_before_expiry, from its hook
        )
        # [audit] resolve: connect to the listed addresses (every one of them),
        # sending the name as SNI and checking the certificate for it.
        pinned = tuple(address for name, address in self.config.resolve if name == domain)
        options = replace(options, resolve={(domain, 0): pinned}) if pinned else options
        target = Target(domain, port, protocol)
        try:
            result = self._probe(target, options)
        except Exception as exc:  # the probe should not raise; a bug must not stop auditing
            log.exception("probe of %s:%d", domain, port)
            return _unknown(f"probe failed: {exc.__class__.__name__}", start)
        self.probes += 1
        return result

    def _record(self, target_id: int, result: Any, started: float, took: float) -> None:
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

    def _record_vantage(self, target_id: int, result: Any, started: float,
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
            ev = evaluate(replace(base, state=mine.state, failures=mine.failures), result,
                          now, cfg.grace, cfg.failure_threshold, cfg.expiry_notices)
            address = getattr(result, "address", None)
            own = store.VantageWrite(
                vantage, ev.state, ev.failures, ev.status, "\n".join(ev.reasons),
                ev.served_fingerprint, None if ev.deployed is None else int(ev.deployed),
                ev.days_left, ev.not_after, None if address is None else str(address), now,
                self._next_probe(ev, now))
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

    def _find_silent(self, db: store.Store, now: float) -> None:
        """Find the vantages that stopped reporting (``vantage_silent`` past a probe due
        from them): each is a finding on its target, written once, by one node. A look
        goes on while it finds more, for up to :data:`_SILENT_BUDGET` seconds (a place
        whose node died leaves many targets at once); then the next look is soon."""
        if now < self._next_silent:
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
        self._next_silent = now + every

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

    def _next_probe(self, ev: Evaluation, now: float) -> float:
        cfg = self.config
        # A refused IP literal stays refused: no retries for it.
        settled = ev.status == "ok" or any(r.startswith(_REFUSED) for r in ev.reasons)
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
            next_probe=self._next_probe(ev, now), good=ev.status in _GOOD,
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


def _unknown(reason: str, start: float) -> Any:
    """A stand-in ProbeResult for a probe that was not (or could not be) run."""
    return SimpleNamespace(
        status="unknown", reasons=[reason], error=None, leaf=None, days_left=None,
        not_after=None, address=None, elapsed=time.monotonic() - start,
        to_json=lambda: {"status": "unknown", "reasons": [reason]},
    )

