"""A commit whose answer is lost in an outage: leases this node holds without knowing it.

When PostgreSQL goes away at the wrong moment, a claim can commit and its
answer never arrive (the connection dropped after the COMMIT was done). The
node then holds leases it does not know of; without a remedy those targets
(or notifications) wait for the lease to end (120 s by default). Here the
store's claim commits and then raises StoreUnavailable once, as a dropped
connection does: the node gives its unknown leases back as soon as the
database answers, and the work is done well within the lease (each bound
below is far from both the few seconds it takes and the 120 s lease).
"""

from __future__ import annotations

import ipaddress
import json
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from server_helpers import FakeProbe, WebhookReceiver, config, new_db, wait_until

from certhook.errors import StoreUnavailable
from certhook.server import store
from certhook.server.audit import Auditor
from certhook.server.notify import Notifier

LEASE = 120.0


def _lose_first_answer(db: store.Store, name: str) -> list[int]:
    """Make ``db.name`` commit and then raise StoreUnavailable, once; the calls made."""
    real: Callable[..., Any] = getattr(db, name)
    calls: list[int] = []

    def once(*args: Any, **kwargs: Any) -> Any:
        answer = real(*args, **kwargs)
        calls.append(len(answer))
        if len(calls) == 1:
            raise StoreUnavailable("db = test: unavailable: the answer was lost")
        return answer

    setattr(db, name, once)
    return calls


def _submit(db: str, *domains: str) -> None:
    now = time.time()
    opened = store.open_store(db)
    try:
        upserts = tuple(store.TargetUpsert("alice", d, 443, "tls", now, None, None, None,
                                           None, now, "", None, None) for d in domains)
        sub = store.Submission("alice", f"s-{now}", now, "test", None, " ".join(domains), "443",
                               "tls", None, None, None, None, upserts)
        assert opened.commit_batch([], [sub]) == [True]
    finally:
        opened.close()


def test_a_claim_whose_answer_was_lost_is_given_back_when_the_database_answers(
        tmp_path: Path) -> None:
    db, _ = new_db(tmp_path, "alice")
    _submit(db, "a.example", "b.example", "c.example")
    probe = FakeProbe()
    auditor = Auditor(config(db, lease=LEASE), probe_fn=probe, node="n1")
    calls = _lose_first_answer(auditor._db(), "claim_targets")
    auditor.start()
    try:
        started = time.monotonic()
        wait_until(lambda: len(probe.calls) >= 3, timeout=30, what="every target probed")
        assert time.monotonic() - started < LEASE / 4
        assert calls[0] == 3  # the first claim had leased all three, its answer lost
        assert sorted(c[0] for c in probe.calls) == ["a.example", "b.example", "c.example"]
        assert auditor.outage.outages == 1
    finally:
        auditor.stop()


def test_a_notification_claim_whose_answer_was_lost_is_given_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db, _ = new_db(tmp_path, "alice")
    hook = WebhookReceiver()
    opened = store.open_store(db)
    now = time.time()
    opened.enqueue([store.Notice("alice", "webhook", hook.url,
                                 json.dumps({"kind": "problem", "state": "critical",
                                             "account": "alice", "domain": "a.example",
                                             "port": 443, "protocol": "tls"}), now, now)])
    # the notifier opens its own store in its thread: the class's method loses the
    # answer of the first claim
    real = type(opened).claim_notifications
    calls: list[int] = []

    def once(self: store.Store, *args: Any) -> Any:
        answer = real(self, *args)
        calls.append(len(answer))
        if len(calls) == 1:
            raise StoreUnavailable("db = test: unavailable: the answer was lost")
        return answer

    monkeypatch.setattr(type(opened), "claim_notifications", once)
    notifier = Notifier(config(db, lease=LEASE, allow_networks=(
        ipaddress.ip_network("127.0.0.0/8"),)), node="n1")
    try:
        started = time.monotonic()
        notifier.start()
        wait_until(lambda: hook.received, timeout=30, what="the notification delivered")
        assert time.monotonic() - started < LEASE / 4
        assert calls[0] == 1  # the first claim had leased it, its answer lost
        # marked sent after the receiver answered: wait for that commit, then once only
        wait_until(lambda: [n.sent is not None for n in opened.notifications()] == [True],
                   timeout=30, what="the notification marked sent")
        assert len(hook.received) == 1
    finally:
        notifier.stop()
        opened.close()
        hook.close()
