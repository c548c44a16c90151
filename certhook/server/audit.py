"""The auditor: probes every target from outside, on a schedule, in two thread pools.

A scheduler thread picks the targets whose ``next_probe`` has come (a new
submission or ``certhook recheck`` sets it to "now"; a submission wakes the
scheduler, and it looks on its own every :data:`POLL` seconds), hands them
to a pool, and goes back to waiting; it never runs on the listeners'
threads. Each result is evaluated (``evaluate.py``), stored with the
target's new state, and any notices are queued for the notifier, all in one
transaction.

Two lanes, so that slow targets cannot delay healthy ones. A target that
accepts a connection and then stays silent (a "tarpit") would hold a thread
for the whole ``probe_timeout``; ten per cent of them once took the
healthy targets' audit from 4 s to 66 s. The fast lane (``concurrency``
threads) gives each probe :data:`FAST_BUDGET` seconds; a probe that runs
out of it is not recorded but moved to the slow lane (a quarter as many
threads) and done again there with the full ``probe_timeout``. A target
whose last probe was slow goes to the slow lane directly. Failing targets
back off: ``retry_interval``, doubling once the failure is confirmed, up to
``retry_max``. ``bench/audit.py`` measures it.

Every probe goes through the SSRF guard (``ssrf.py``): the probe calls it
with each resolved address just before connecting.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any, Callable

from certhook.server import store
from certhook.server.config import ServerConfig
from certhook.server.evaluate import WAITING, Evaluation, TargetState, evaluate
from certhook.server.ssrf import forbidden_reason, make_guard
from certhook.server.worker import Worker

__all__ = ["FAST_BUDGET", "POLL", "Auditor", "ProbeFunction", "backoff"]

log = logging.getLogger("certhook.audit")

ProbeFunction = Callable[[Any, Any], Any]
#: Seconds between looks for due targets when nothing wakes the scheduler:
#: picks up ``certhook recheck`` and submissions made by another process (gunicorn).
POLL = 2.0
#: Seconds a probe may take in the fast lane; a TLS handshake across the
#: world takes well under one. Longer, and it is done again in the slow lane.
FAST_BUDGET = 2.0
#: Seconds between probes while a renewed certificate is awaited (``waiting``).
WAITING_RECHECK = 60.0
_REFUSED = "not probed: "
_FAST, _SLOW = "fast", "slow"
_DUE = (
    "SELECT id, domain, port, protocol, (SELECT elapsed FROM results WHERE target ="
    " targets.id ORDER BY time DESC LIMIT 1) AS last_elapsed FROM targets"
    " WHERE next_probe IS NOT NULL AND next_probe <= ? ORDER BY next_probe LIMIT ?"
)


def backoff(config: ServerConfig, failures: int) -> float:
    """Seconds until the next probe of a target failing ``failures`` times in a row.

    ``retry_interval`` until the failure is confirmed (``failure_threshold``),
    then doubling with each further failure, up to ``retry_max`` (and never
    past ``interval``).
    """
    over = min(max(0, failures - config.failure_threshold), 30)
    cap = min(max(config.retry_max, config.retry_interval), config.interval)
    return min(config.retry_interval * 2.0 ** over, cap)


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
    ) -> None:
        self.config = config
        self._probe = probe_fn or _real_probe
        self._on_notice = on_notice
        self._clock = clock
        fast = max(1, config.concurrency)
        slow = max(2, fast // 4)
        self._pools = {_FAST: ThreadPoolExecutor(fast, "certhook-probe"),
                       _SLOW: ThreadPoolExecutor(slow, "certhook-probe-slow")}
        # in flight or queued per lane; twice the threads keeps each pool fed
        self._capacity = {_FAST: 2 * fast, _SLOW: 2 * slow}
        self._budget = min(FAST_BUDGET, config.probe_timeout)
        self._inflight: dict[int, str] = {}
        self._demoted: set[int] = set()  # ran out of the fast lane's budget: slow lane next
        self._backlog = 0  # due slow-lane targets left waiting in the last round
        self._lock = threading.Lock()
        self._local = threading.local()
        self._guard = make_guard(config.allow_networks)
        self.probes = 0
        self.demotions = 0
        super().__init__()

    def stop(self) -> None:
        super().stop()
        for pool in self._pools.values():
            pool.shutdown(wait=True, cancel_futures=True)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = store.connect(self.config.db)
        return conn

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = POLL
            try:
                wait = self._schedule()
            except Exception:
                log.exception("scheduler")
            self._wake.wait(max(0.0, min(wait, POLL)))

    def _slow(self, target_id: int, last_elapsed: float | None) -> bool:
        """Does this target belong in the slow lane (its last probe was slow)?"""
        if target_id in self._demoted:
            return True
        return self._budget < self.config.probe_timeout and last_elapsed is not None and (
            last_elapsed >= 0.9 * self._budget)

    def _schedule(self) -> float:
        conn = self._conn()
        now = self._clock()
        with self._lock:
            room = {lane: cap - sum(1 for v in self._inflight.values() if v == lane)
                    for lane, cap in self._capacity.items()}
            skip = len(self._inflight) + len(self._demoted) + self._backlog
        if room[_FAST] > 0 or room[_SLOW] > 0:
            rows = conn.execute(_DUE, (now, room[_FAST] + room[_SLOW] + skip)).fetchall()
            backlog = 0
            for row in rows:
                target_id = int(row["id"])
                with self._lock:
                    if target_id in self._inflight:
                        continue
                    lane = _SLOW if self._slow(target_id, row["last_elapsed"]) else _FAST
                    if room[lane] <= 0:
                        backlog += lane == _SLOW
                        continue
                    room[lane] -= 1
                    self._inflight[target_id] = lane
                self._pools[lane].submit(self._audit, lane, target_id, row["domain"],
                                         row["port"], row["protocol"])
            self._backlog = backlog
        nxt = conn.execute(
            "SELECT min(next_probe) FROM targets WHERE next_probe > ?", (now,)
        ).fetchone()[0]
        return POLL if nxt is None else float(nxt) - now

    def _audit(self, lane: str, target_id: int, domain: str, port: int, protocol: str) -> None:
        try:
            started = self._clock()
            timeout = self._budget if lane == _FAST else self.config.probe_timeout
            begun = time.monotonic()
            result = self._run_probe(domain, port, protocol, timeout)
            took = time.monotonic() - begun
            if (lane == _FAST and timeout < self.config.probe_timeout
                    and result.status == "unknown" and took >= 0.9 * timeout):
                # Out of the fast lane's budget: not a verdict yet, the slow lane decides.
                with self._lock:
                    self._demoted.add(target_id)
                    self.demotions += 1
                return
            self._record(target_id, result, started)
            with self._lock:
                self._demoted.discard(target_id)
        except Exception:
            log.exception("auditing %s:%s", domain, port)
        finally:
            with self._lock:
                self._inflight.pop(target_id, None)
            self._wake.set()

    def _run_probe(self, domain: str, port: int, protocol: str, timeout: float) -> Any:
        start = time.monotonic()
        literal = forbidden_reason(domain, self.config.allow_networks)
        if literal is not None and literal != "not an IP address":
            # An IP literal the guard refuses: no need to ask the probe.
            return _unknown(f"{_REFUSED}{literal}", start)
        from certhook.probe import ProbeOptions, Target

        options = ProbeOptions(
            timeout=timeout, warn_days=self.config.warn_days,
            crit_days=self.config.crit_days, ca_file=self.config.ca_file,
            allow_address=self._guard,
        )
        address = dict(self.config.resolve).get(domain)
        if address is None:
            target = Target(domain, port, protocol)
        else:  # [audit] resolve: connect there, but check the certificate for the name
            target = Target(address, port, protocol, servername=domain, expect_name=domain)
        try:
            result = self._probe(target, options)
        except Exception as exc:  # the probe should not raise; a bug must not stop auditing
            log.exception("probe of %s:%d", domain, port)
            return _unknown(f"probe failed: {exc.__class__.__name__}", start)
        self.probes += 1
        return result

    def _record(self, target_id: int, result: Any, started: float) -> None:
        cfg = self.config
        conn = self._conn()
        now = self._clock()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT * FROM targets WHERE id = ?", (target_id,)).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                return
            before = TargetState(
                state=row["state"], failures=row["failures"],
                notified_state=row["notified_state"],
                notified_days=frozenset(int(x) for x in row["notified_days"].split(",") if x),
                notified_for=row["notified_for"],
                expected_fingerprint=row["expected_fingerprint"],
                expected_since=row["expected_since"], last_event=row["last_event"],
            )
            ev = evaluate(before, result, now, cfg.grace, cfg.failure_threshold,
                          cfg.expiry_notices)
            self._store(conn, row, ev, result, now, started)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if ev.state != before.state:
            log.info("%s %s:%d/%s: %s -> %s", row["account"], row["domain"], row["port"],
                     row["protocol"], before.state, ev.state)
        if ev.notices and self._on_notice is not None:
            self._on_notice()

    def _next_probe(self, ev: Evaluation, now: float) -> float:
        cfg = self.config
        # A refused IP literal stays refused: no retries for it.
        settled = ev.status == "ok" or any(r.startswith(_REFUSED) for r in ev.reasons)
        base = cfg.interval if settled else backoff(cfg, ev.failures)
        delay = base * (1.0 + random.uniform(-cfg.jitter, cfg.jitter))
        nxt = now + max(delay, 0.0)
        if ev.state == WAITING:  # look again soon: the reload may come any moment
            nxt = min(nxt, now + WAITING_RECHECK)
        if ev.recheck_at is not None:
            nxt = min(nxt, ev.recheck_at + 1.0)
        return nxt

    def _store(
        self, conn: Any, row: Any, ev: Evaluation, result: Any, now: float, started: float
    ) -> None:
        reasons = "\n".join(ev.reasons)
        nxt = self._next_probe(ev, now)
        deployed = None if ev.deployed is None else int(ev.deployed)
        address = getattr(result, "address", None)
        address = None if address is None else str(address)
        conn.execute(
            "INSERT INTO results (target, time, status, state, reasons, days_left, not_after,"
            " issuer, fingerprint, deployed, address, elapsed) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (row["id"], now, ev.status, ev.state, reasons, ev.days_left, ev.not_after, ev.issuer,
             ev.served_fingerprint, deployed, address, getattr(result, "elapsed", None)),
        )
        conn.execute(
            "UPDATE targets SET state = ?, state_since = CASE WHEN state = ? THEN state_since"
            " ELSE ? END, failures = ?, notified_state = ?, notified_days = ?, notified_for = ?,"
            " last_probe = ?, status = ?, reasons = ?, days_left = ?, not_after = ?, issuer = ?,"
            " served_fingerprint = ?, deployed = ?, address = ?,"
            " next_probe = CASE WHEN last_submitted > ? OR next_probe > ?"
            " THEN min(next_probe, ?) ELSE ? END WHERE id = ?",
            (ev.state, ev.state, now, ev.failures, ev.notified_state,
             ",".join(str(d) for d in sorted(ev.notified_days, reverse=True)), ev.notified_for,
             now, ev.status, reasons, ev.days_left, ev.not_after, ev.issuer,
             ev.served_fingerprint, deployed, address,
             # a submission or a recheck that came during the probe asked for a new one
             started, started, nxt, nxt, row["id"]),
        )
        if self.config.history_keep > 0 and random.random() < 0.05:
            conn.execute(
                "DELETE FROM results WHERE target = ? AND id NOT IN (SELECT id FROM results"
                " WHERE target = ? ORDER BY time DESC LIMIT ?)",
                (row["id"], row["id"], self.config.history_keep),
            )
        for notice in ev.notices:
            payload = {
                **notice, "account": row["account"], "domain": row["domain"],
                "port": row["port"], "protocol": row["protocol"], "status": ev.status,
                "reasons": ev.reasons, "days_left": ev.days_left, "not_after": ev.not_after,
                "issuer": ev.issuer, "served_fingerprint": ev.served_fingerprint,
                "expected_fingerprint": row["expected_fingerprint"], "time": now,
            }
            from certhook.server.notify import enqueue

            enqueue(conn, self.config, row["account"], payload, now)


def _unknown(reason: str, start: float) -> Any:
    """A stand-in ProbeResult for a probe that was not (or could not be) run."""
    return SimpleNamespace(
        status="unknown", reasons=[reason], error=None, leaf=None, days_left=None,
        not_after=None, address=None, elapsed=time.monotonic() - start,
        to_json=lambda: {"status": "unknown", "reasons": [reason]},
    )

