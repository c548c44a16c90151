"""The auditor: probes every target from outside, on a schedule, in a thread pool.

A scheduler thread picks the targets whose ``next_probe`` has come (a new
submission sets it to "now", and wakes the scheduler), hands them to a
pool of ``concurrency`` threads, and goes back to waiting; it never runs
on the listeners' threads, so a slow or black-holed target costs a pool
thread for ``probe_timeout`` seconds and nothing else. Each result is
evaluated (``evaluate.py``), stored with the target's new state, and any
notices are queued for the notifier, all in one transaction.

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
from certhook.server.evaluate import Evaluation, TargetState, evaluate
from certhook.server.ssrf import forbidden_reason, make_guard
from certhook.server.worker import Worker

__all__ = ["Auditor", "ProbeFunction"]

log = logging.getLogger("certhook.audit")

ProbeFunction = Callable[[Any, Any], Any]
_POLL = 5.0  # seconds; also picks up targets submitted by another process (gunicorn)
_REFUSED = "not probed: "


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
        self._pool = ThreadPoolExecutor(max(1, config.concurrency), "certhook-probe")
        self._inflight: set[int] = set()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._guard = make_guard(config.allow_networks)
        self.probes = 0
        super().__init__()

    def stop(self) -> None:
        super().stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = store.connect(self.config.db)
        return conn

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            wait = _POLL
            try:
                wait = self._schedule()
            except Exception:
                log.exception("scheduler")
            self._wake.wait(max(0.0, min(wait, _POLL)))

    def _schedule(self) -> float:
        conn = self._conn()
        now = self._clock()
        with self._lock:
            room = self.config.concurrency * 2 - len(self._inflight)
            busy = tuple(self._inflight)
        if room > 0:
            rows = conn.execute(
                "SELECT id, domain, port, protocol FROM targets WHERE next_probe IS NOT NULL"
                " AND next_probe <= ? ORDER BY next_probe LIMIT ?",
                (now, room + len(busy)),
            ).fetchall()
            for row in rows:
                with self._lock:
                    if row["id"] in self._inflight or len(self._inflight) >= room + len(busy):
                        continue
                    self._inflight.add(row["id"])
                self._pool.submit(self._audit, int(row["id"]), row["domain"], row["port"],
                                  row["protocol"])
        nxt = conn.execute(
            "SELECT min(next_probe) FROM targets WHERE next_probe > ?", (now,)
        ).fetchone()[0]
        return _POLL if nxt is None else float(nxt) - now

    def _audit(self, target_id: int, domain: str, port: int, protocol: str) -> None:
        try:
            started = self._clock()
            result = self._run_probe(domain, port, protocol)
            self._record(target_id, result, started)
        except Exception:
            log.exception("auditing %s:%s", domain, port)
        finally:
            with self._lock:
                self._inflight.discard(target_id)
            self._wake.set()

    def _run_probe(self, domain: str, port: int, protocol: str) -> Any:
        start = time.monotonic()
        literal = forbidden_reason(domain, self.config.allow_networks)
        if literal is not None and literal != "not an IP address":
            # An IP literal the guard refuses: no need to ask the probe.
            return _unknown(f"{_REFUSED}{literal}", start)
        from certhook.probe import ProbeOptions, Target

        options = ProbeOptions(
            timeout=self.config.probe_timeout, warn_days=self.config.warn_days,
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
        # A failure is checked again soon, except a refused IP literal: that stays refused.
        settled = ev.status == "ok" or any(r.startswith(_REFUSED) for r in ev.reasons)
        base = cfg.interval if settled else min(cfg.retry_interval, cfg.interval)
        delay = base * (1.0 + random.uniform(-cfg.jitter, cfg.jitter))
        nxt = now + max(delay, 0.0)
        if ev.recheck_at is not None:
            nxt = min(nxt, ev.recheck_at + 1.0)
        return nxt

    def _store(
        self, conn: Any, row: Any, ev: Evaluation, result: Any, now: float, started: float
    ) -> None:
        reasons = "\n".join(ev.reasons)
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
            " next_probe = CASE WHEN last_submitted > ? THEN next_probe ELSE ? END WHERE id = ?",
            (ev.state, ev.state, now, ev.failures, ev.notified_state,
             ",".join(str(d) for d in sorted(ev.notified_days, reverse=True)), ev.notified_for,
             now, ev.status, reasons, ev.days_left, ev.not_after, ev.issuer,
             ev.served_fingerprint, deployed, address,
             # a submission that arrived during the probe asked for a new one: keep it
             started, self._next_probe(ev, now), row["id"]),
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

