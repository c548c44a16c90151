"""The auditor: state per target, the fingerprint check, the schedule, concurrency."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from server_helpers import (
    FakeProbe,
    LineClient,
    add_line,
    config,
    count,
    fake_result,
    new_db,
    running,
    targets,
    wait_until,
)

from certhook.server import audit, store
from certhook.server.evaluate import TargetState, evaluate
from certhook.server.recheck import mark_due

NOW = 1_800_000_000.0
OK = fake_result("ok", fingerprint="aa" * 32, days=60)
BAD = fake_result("unknown", error="connection refused by 192.0.2.1", connected=False)


def _run(results: list[Any], start: TargetState | None = None, **kw: Any
         ) -> tuple[TargetState, list[list[dict[str, Any]]], list[str]]:
    state = start or TargetState()
    notices, states = [], []
    for i, result in enumerate(results):
        ev = evaluate(state, result, NOW + i, **kw)
        notices.append(ev.notices)
        states.append(ev.state)
        state = TargetState(ev.state, ev.failures, ev.notified_state, ev.notified_days,
                            ev.notified_for, state.expected_fingerprint, state.expected_since)
    return state, notices, states


def test_first_ok_is_silent_and_one_failure_is_not_an_outage() -> None:
    _, notices, states = _run([OK, BAD, OK, BAD, BAD, BAD, OK])
    assert states == ["ok", "ok", "ok", "ok", "unknown", "unknown", "ok"]
    kinds = [[n["kind"] for n in ns] for ns in notices]
    assert kinds == [[], [], [], [], ["problem"], [], ["recovery"]]
    assert notices[4][0]["previous"] == "ok" and notices[6][0]["previous"] == "unknown"


def test_threshold_one_and_escalation() -> None:
    warn = fake_result("warning", days=15, reasons=("expires in 15 days",))
    crit = fake_result("critical", days=5, reasons=("expires in 5 days",))
    _, notices, states = _run([OK, warn, crit], threshold=1, expiry_notices=())
    assert states == ["ok", "warning", "critical"]
    assert [n[0]["state"] for n in notices[1:]] == ["warning", "critical"]


def test_not_deployed_after_grace_only() -> None:
    expected = "bb" * 32
    start = TargetState(expected_fingerprint=expected, expected_since=NOW - 10)
    within = evaluate(start, OK, NOW, grace=3600)
    assert within.status == "ok" and within.deployed is False and not within.not_deployed
    assert within.recheck_at == NOW - 10 + 3600
    after = evaluate(start, OK, NOW, grace=5, threshold=1)
    assert after.status == "critical" and after.not_deployed and after.deployed is False
    assert after.reasons[0].startswith("renewed but not deployed")
    assert after.notices[0]["kind"] == "not-deployed"
    live = evaluate(start, fake_result("ok", fingerprint=expected), NOW, grace=5)
    assert live.status == "ok" and live.deployed is True


def test_failed_renewal_event_is_a_warning() -> None:
    ev = evaluate(TargetState(last_event="failed"), OK, NOW, threshold=1)
    assert ev.status == "warning" and "certbot reported a failed renewal" in ev.reasons
    assert evaluate(TargetState(last_event="deployed"), OK, NOW).status == "ok"


def test_expiry_notices_once_per_threshold_and_per_certificate() -> None:
    results = [fake_result("ok", days=d) for d in (30, 20, 19, 6, 6, 0)]
    state, notices, _ = _run(results, threshold=5)
    expiry = [[n["threshold"] for n in ns if n["kind"] == "expiry"] for ns in notices]
    # 21, 7 and 1 days of a 90-day certificate: the default thresholds by lifetime
    assert expiry == [[], ["23.33%"], [], ["7.78%"], [], ["1.11%"]]
    assert state.notified_days == frozenset({"23.33%", "7.78%", "1.11%"})
    # a renewed certificate (another fingerprint) starts over
    renewed = fake_result("ok", fingerprint="cc" * 32, days=5)
    ev = evaluate(state, renewed, NOW, threshold=5)
    assert [n["threshold"] for n in ev.notices if n["kind"] == "expiry"] == ["7.78%"]
    # bare day counts, as configured before thresholds had units, are days
    state, notices, _ = _run(results, threshold=5, expiry_notices=(21, 7, 1))
    expiry = [[n["threshold"] for n in ns if n["kind"] == "expiry"] for ns in notices]
    assert expiry == [[], ["21"], [], ["7"], [], ["1"]]


def test_expiry_notices_stored_as_day_counts_are_not_sent_again() -> None:
    """A row notified at 21 days (before thresholds had units) is not told 23.33% again."""
    start = TargetState(notified_days=frozenset({"21"}), notified_for="aa" * 32)
    ev = evaluate(start, fake_result("ok", days=19), NOW, threshold=5)
    assert [n for n in ev.notices if n["kind"] == "expiry"] == []
    ev = evaluate(start, fake_result("ok", days=6), NOW, threshold=5)
    assert [n["threshold"] for n in ev.notices if n["kind"] == "expiry"] == ["7.78%"]


def test_submission_is_probed_soon_then_on_interval(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe()
    cfg = config(db, interval=3600.0, jitter=0.1)
    with running(cfg, probe_fn=probe) as srv:
        assert srv.line_address
        client = LineClient(srv.line_address)
        started = time.time()
        assert client.ask(add_line(keys["alice"], "a.example", port=[443, 25])).startswith(b"ok")
        wait_until(lambda: len(probe.calls) >= 2, what="two probes")
        assert time.time() - started < 60  # not after the interval (1 h, jitter 10 %)
        assert sorted(probe.calls) == [("a.example", 25, "smtp"), ("a.example", 443, "tls")]
        wait_until(lambda: all(t["last_probe"] for t in targets(db)), what="stored results")
        for t in targets(db):
            assert t["state"] == "ok" and t["days_left"] == 60
            assert 3600 * 0.9 - 5 <= t["next_probe"] - t["last_probe"] <= 3600 * 1.1 + 5
        time.sleep(0.5)
        assert len(probe.calls) == 2  # not again before the interval


def test_concurrency_is_bounded_and_listeners_stay_responsive(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "FAST_BUDGET", 60.0)  # every probe stays in the fast lane
    db, keys = new_db(tmp_path, "alice")
    running_now, peak = [0], [0]
    lock = threading.Lock()
    release = threading.Event()  # probes stay busy until the listener has been tried

    def slow(target: Any, options: Any) -> Any:
        with lock:
            running_now[0] += 1
            peak[0] = max(peak[0], running_now[0])
        release.wait(60)
        with lock:
            running_now[0] -= 1
        return fake_result("ok")

    with running(config(db, concurrency=3), probe_fn=slow) as srv:
        assert srv.line_address
        client = LineClient(srv.line_address)
        domains = [f"d{i}.example" for i in range(12)]
        assert client.ask(add_line(keys["alice"], *domains)).startswith(b"ok")
        wait_until(lambda: running_now[0] == 3, what="every probe thread busy")
        for _ in range(5):  # answered while every probe thread is held (60 s at most)
            started = time.monotonic()
            assert client.ask(add_line(keys["alice"], "more.example")).startswith(b"ok")
            assert time.monotonic() - started < 10  # far below the probes' 60 s hold
        release.set()
        wait_until(lambda: count(db, "targets", last_probe=None)
                   == 0, what="all probed")
    assert peak[0] == 3


def test_waiting_probes_move_to_a_bounded_slow_lane_and_do_not_block_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit, "FAST_BUDGET", 0.1)
    db, keys = new_db(tmp_path, "alice")
    release = threading.Event()
    waiting, peak = [0], [0]
    lock = threading.Lock()

    def probe(target: Any, options: Any) -> Any:
        if target.host.startswith("pit"):  # a tarpit: waits until the end of the test
            with lock:
                waiting[0] += 1
                peak[0] = max(peak[0], waiting[0])
            release.wait(60)
            with lock:
                waiting[0] -= 1
            return BAD
        return OK

    slow_lane = 2 * audit.SLOW_PER_FAST
    with running(config(db, concurrency=2, retry_interval=3600.0), probe_fn=probe) as srv:
        try:
            assert srv.line_address and srv.auditor
            client = LineClient(srv.line_address)
            pits = [f"pit{i}.example" for i in range(2 + slow_lane)]  # all held at once
            for i in range(0, len(pits), 10):  # first: they head the queue
                assert client.ask(add_line(keys["alice"], *pits[i:i + 10])).startswith(b"ok")
            # the slow lane fills up, then the fast lane; never more
            wait_until(lambda: waiting[0] == 2 + slow_lane, what="both lanes full")
            time.sleep(0.5)
            assert peak[0] == 2 + slow_lane and srv.auditor.moved == slow_lane
            release.set()
            wait_until(lambda: count(db, "targets", last_probe=None) == 0, what="every pit probed")
            # the pits are known slow now: they start in the slow lane and leave the
            # fast lane to the healthy targets submitted behind them
            release.clear()
            peak[0] = 0
            conn = store.open_store(db, create=False)
            mark_due(conn, None, None, time.time())
            conn.close()
            healthy = [f"ok{i}.example" for i in range(30)]
            for i in range(0, len(healthy), 10):
                assert client.ask(add_line(keys["alice"], *healthy[i:i + 10])
                                  ).startswith(b"ok")
            wait_until(lambda: count(db, "targets", domain=lambda d: d.startswith("ok"),
                                         last_probe=lambda v: v is not None) == 30,
                       what="the healthy targets, while the slow lane is full")
            assert peak[0] == slow_lane and waiting[0] == slow_lane
        finally:
            release.set()  # before the server stops: it waits for its probes


def test_failures_trigger_retry_and_state_change(tmp_path: Path) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe({"flaky.example": OK})
    with running(config(db, retry_interval=0.1, interval=0.3, jitter=0.0), probe_fn=probe
                 ) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], "flaky.example"))
        wait_until(lambda: targets(db)[0]["state"] == "ok", what="ok")
        probe.results["flaky.example"] = BAD
        wait_until(lambda: targets(db)[0]["state"] == "unknown", what="unknown")
        row = targets(db)[0]
        assert row["failures"] >= 2 and "connection refused" in row["reasons"]
        probe.results["flaky.example"] = OK
        wait_until(lambda: targets(db)[0]["state"] == "ok", what="recovery")
    kinds = count(db, "results", status="unknown")
    assert kinds >= 2


@pytest.mark.parametrize("domain", ["*.example.org"])
def test_wildcards_are_stored_not_probed(tmp_path: Path, domain: str) -> None:
    db, keys = new_db(tmp_path, "alice")
    probe = FakeProbe()
    with running(config(db), probe_fn=probe) as srv:
        assert srv.line_address
        LineClient(srv.line_address).ask(add_line(keys["alice"], domain, "x.example.org"))
        wait_until(lambda: probe.calls, what="a probe")
        time.sleep(0.3)
    assert probe.calls == [("x.example.org", 443, "tls")]
    assert {t["domain"] for t in targets(db)} == {domain, "x.example.org"}


# -- the timeline (issue 8): waiting, failed renewals, backoff -----------------------------


def test_within_the_grace_the_target_is_waiting_not_ok() -> None:
    expected = "bb" * 32
    start = TargetState(state="ok", notified_state="ok", expected_fingerprint=expected,
                        expected_since=NOW - 10)
    ev = evaluate(start, OK, NOW, grace=300)
    assert ev.state == "waiting" and ev.notices == [] and ev.failures == 0
    assert ev.reasons[0].startswith("waiting for deployment until ")
    until = time.strftime("%H:%M", time.gmtime(NOW - 10 + 300))
    assert f"until {until} UTC" in ev.reasons[0]
    # the grace is over: critical, confirmed at the threshold, and only then a notice
    first = evaluate(TargetState(ev.state, ev.failures, ev.notified_state,
                                 expected_fingerprint=expected, expected_since=NOW - 10),
                     OK, NOW + 300, grace=300, threshold=2)
    assert first.status == "critical" and first.state == "waiting" and not first.notices
    second = evaluate(TargetState(first.state, first.failures, first.notified_state,
                                  expected_fingerprint=expected, expected_since=NOW - 10),
                      OK, NOW + 420, grace=300, threshold=2)
    assert second.state == "critical" and second.notices[0]["kind"] == "not-deployed"
    # served in time: ok again, and no notice (nothing was ever wrong)
    live = evaluate(TargetState("waiting", 0, "ok", expected_fingerprint=expected,
                                expected_since=NOW - 10),
                    fake_result("ok", fingerprint=expected), NOW, grace=300)
    assert live.state == "ok" and live.notices == [] and live.deployed is True


def test_a_failed_renewal_is_shown_and_notified_at_once() -> None:
    ev = evaluate(TargetState(state="ok", notified_state="ok", last_event="failed"), OK, NOW,
                  threshold=2)
    assert ev.state == "warning" and ev.status == "warning"
    assert [n["kind"] for n in ev.notices] == ["problem"]
    assert "certbot reported a failed renewal" in ev.reasons


def test_failing_targets_back_off_to_the_cap() -> None:
    from certhook.server.audit import backoff
    from certhook.server.config import ServerConfig

    cfg = ServerConfig(retry_interval=120.0, retry_max=3600.0, failure_threshold=2)
    assert [backoff(cfg, n) for n in range(1, 9)] == [
        120, 120, 240, 480, 960, 1920, 3600, 3600]
    assert backoff(ServerConfig(retry_interval=120.0, interval=600.0), 9) == 600
