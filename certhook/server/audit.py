"""The auditor: probes every target from outside, on a schedule, in a thread pool.

A scheduler thread picks the targets whose ``next_probe`` has come (a new
submission or ``certhook recheck`` sets it to "now"; a submission wakes the
scheduler, and it looks on its own every :data:`POLL` seconds), hands them
to the pool, and goes back to waiting; it never runs on the listeners'
threads. Each result is evaluated (``evaluate.py``), stored with the
target's new state, and any notices are queued for the notifier, all in one
transaction (``recorder.py``).

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

Vantage points (``vantage.py``): a node with ``[audit] vantage = NAME`` also
claims the rows of that vantage (``Store.claim_vantages``), the targets whose
accounts (or ``[target]`` sections) name it; a target with vantages is never
claimed as a plain one. Any node looks for vantages that stopped reporting.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable

from certhook.errors import StoreUnavailable
from certhook.server import metrics, store
from certhook.server.config import ServerConfig
from certhook.server.outage import Outage, release_leases
from certhook.server.recorder import POLL, REFUSED, Recorder, backoff
from certhook.server.ssrf import forbidden_reason, make_guard
from certhook.server.worker import Worker

__all__ = ["FAST_BUDGET", "POLL", "SLOW_PER_FAST", "Auditor", "ProbeFunction", "backoff",
           "default_node"]

log = logging.getLogger("certhook.audit")

ProbeFunction = Callable[[Any, Any], Any]
#: Seconds a probe may hold a fast slot; then it goes on in the slow lane.
FAST_BUDGET = 0.5
#: The slow lane's size, per fast slot: its probes wait on silent peers (one
#: thread and one socket each), they do not work.
SLOW_PER_FAST = 16
_FAST, _SLOW = "fast", "slow"
_MAX_FETCH = 1 << 16  # due rows looked at in one round, at most


class _Flight:
    """A probe in flight: its lane and when it started (monotonic)."""

    __slots__ = ("lane", "started")

    def __init__(self, lane: str, started: float) -> None:
        self.lane, self.started = lane, started


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
        self._took: dict[int, float] = {}  # target -> seconds its last probe took
        self._unrecorded: set[int] = set()  # probed under our lease, the result not recorded
        self._lock = threading.Lock()
        self._store: store.Store | None = None
        self._store_lock = threading.Lock()
        self._guard = make_guard(config.allow_networks)
        self.probes = 0
        self.moved = 0  # probes moved from the fast lane to the slow one
        self.outage = Outage("auditor", log)
        # turns each result into the store's write (the evaluation, vantages, notices)
        self.recorder = Recorder(config, self.node, self._db, clock, on_notice)
        self._synced = False  # the targets given their accounts' vantages at start
        self._claims_unknown = False  # after an outage: leases of ours may be unknown here
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
                # a claim may have committed with its answer lost: leases of ours that
                # nothing here knows of, given back once the database answers
                self._claims_unknown = True
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
        if self._claims_unknown:
            with self._lock:
                flying = sorted(self._inflight)
            db.release_targets(self.node, keep=flying)
            self._claims_unknown = False
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
            self.recorder.find_silent(db, now)
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
                self.recorder.record_vantage(target_id, result, started, took)
            else:
                self.recorder.record(target_id, result, started, took)
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
            return _unknown(f"{REFUSED}{literal}", start)
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

def _unknown(reason: str, start: float) -> Any:
    """A stand-in ProbeResult for a probe that was not (or could not be) run."""
    return SimpleNamespace(
        status="unknown", reasons=[reason], error=None, leaf=None, days_left=None,
        not_after=None, address=None, elapsed=time.monotonic() - start,
        to_json=lambda: {"status": "unknown", "reasons": [reason]},
    )

