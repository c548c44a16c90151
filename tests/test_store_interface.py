"""Every public method of the Store, against a real store.

The ``store`` fixture gives a fresh, empty store; a later change
parametrizes it over the implementations (SQLite here, PostgreSQL next), so
everything below asserts only what the interface promises.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from server_helpers import fresh_db

from certhook.errors import LocalError, UsageError
from certhook.server.store import (
    SILENT,
    Notice,
    ProbeWrite,
    Store,
    Submission,
    Target,
    TargetUpsert,
    Vantage,
    VantageWrite,
    hash_key,
    open_store,
)

T0 = 1_800_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(fresh_db(tmp_path, "store.db"))
    try:
        yield opened
    finally:
        opened.close()


def _upsert(account: str, domain: str, now: float, port: int = 443, protocol: str = "tls",
            fingerprint: str | None = None, lineage: str | None = None,
            next_probe: float | None = -1.0) -> TargetUpsert:
    return TargetUpsert(account, domain, port, protocol, now, lineage, None, fingerprint,
                        now if fingerprint else None, now if next_probe == -1.0 else next_probe,
                        "", None, None)


def _submission(account: str, client_id: str, now: float, *targets: TargetUpsert) -> Submission:
    return Submission(account, client_id, now, "test", "peer", " ".join(t.domain for t in targets),
                      "", "", None, None, None, "test/1", tuple(targets))


def _add(store: Store, account: str, *domains: str, now: float = T0) -> list[Target]:
    subs = [_submission(account, f"{account}-{d}-{now}", now, _upsert(account, d, now))
            for d in domains]
    assert store.commit_batch([], subs) == [True] * len(subs)
    return [store.find_targets(account, d)[0] for d in domains]


def _write(now: float, state: str = "ok", status: str = "ok", nxt: float | None = None,
           notices: tuple[Notice, ...] = (), retire: bool = False, keep: int = 0,
           elapsed: float = 0.5) -> ProbeWrite:
    return ProbeWrite(
        time=now, started=now - 1, status=status, state=state, reasons="r1\nr2",
        days_left=30, not_after=now + 30 * 86400, issuer="CN=Test CA", fingerprint="ab" * 32,
        deployed=1, address="127.0.0.1", elapsed=elapsed, failures=0 if status == "ok" else 1,
        notified_state=state, notified_days="30", notified_for="ab" * 32,
        next_probe=now + 3600 if nxt is None else nxt, good=status in ("ok", "warning"),
        keep=keep, notices=notices, retire=retire)


# -- opening -------------------------------------------------------------------------------

def test_open_store_accepts_a_path_and_a_sqlite_url(tmp_path: Path) -> None:
    url = open_store(f"sqlite:///{tmp_path}/u.db")
    url.add_account("alice")
    url.close()
    again = open_store(str(tmp_path / "u.db"), create=False)
    assert [a.name for a in again.list_accounts()] == ["alice"]
    again.close()
    with pytest.raises(LocalError, match="no such database"):
        open_store(str(tmp_path / "none.db"), create=False)


# -- accounts and keys -----------------------------------------------------------------------

def test_accounts_keys_and_last_use(store: Store) -> None:
    key = store.add_account("alice", now=T0)
    with pytest.raises(UsageError, match="exists"):
        store.add_account("alice")
    with pytest.raises(UsageError, match="bad account name"):
        store.add_account("a b")
    assert store.authenticate(key, now=T0 + 1) == "alice"
    assert store.authenticate(key, "alice", now=T0 + 1) == "alice"
    assert store.authenticate(key, "bob", now=T0 + 1) is None
    assert store.authenticate(key + "x", now=T0 + 1) is None
    assert store.authenticate(None) is None
    [account] = store.list_accounts()
    assert (account.name, account.created, account.last_used) == ("alice", T0, T0 + 1)
    new, until = store.rotate_key("alice", 100.0, now=T0 + 10)
    assert until == T0 + 110
    assert store.authenticate(key, now=T0 + 50) == "alice"  # the overlap
    assert store.authenticate(key, now=T0 + 111) is None
    assert store.authenticate(new, now=T0 + 111) == "alice"
    keys = {k.key_hash: k for k in store.active_keys()}
    assert keys[hash_key(new)].expires is None and keys[hash_key(new)].column == "last_used"
    assert keys[hash_key(key)].expires == T0 + 110
    assert keys[hash_key(key)].column == "old_last_used"
    store.record_uses([("last_used", "alice", T0 + 500)])
    assert store.list_accounts()[0].last_used == T0 + 500
    assert store.revoke_account("alice", now=T0 + 600)
    assert not store.revoke_account("alice")
    assert store.authenticate(new) is None and store.active_keys() == []
    with pytest.raises(UsageError, match="was revoked"):
        store.add_account("alice")
    with pytest.raises(UsageError, match="no account"):
        store.rotate_key("nobody", 0)
    revived, until = store.rotate_key("alice", 100.0)
    assert until is None and store.authenticate(revived) == "alice"


def test_accounts_version_changes_when_another_connection_commits(store: Store) -> None:
    before = store.accounts_version()
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(len(store.add_account("bob"))))
    thread.start()
    thread.join()
    assert done and store.accounts_version() != before


# -- submissions -----------------------------------------------------------------------------

def test_commit_batch_stores_once_and_merges_targets(store: Store) -> None:
    store.add_account("alice")
    first = _submission("alice", "c1", T0, _upsert("alice", "a.example", T0, fingerprint="aa"),
                        _upsert("alice", "*.example", T0, next_probe=None))
    later = _submission("alice", "c2", T0, _upsert("alice", "a.example", T0, fingerprint="bb",
                                                   lineage="a"))
    assert store.commit_batch([("last_used", "alice", T0)], [first, later]) == [True, True]
    assert store.list_accounts()[0].last_used == T0
    # a retry (same client id) is not stored again and its targets are not touched
    retry = _submission("alice", "c1", T0 + 5, _upsert("alice", "new.example", T0 + 5))
    assert store.commit_batch([], [retry, _submission("alice", "c3", T0 + 5)]) == [False, True]
    assert store.find_targets("alice", "new.example") == []
    [a] = store.find_targets("alice", "a.example")
    assert (a.expected_fingerprint, a.lineage, a.next_probe) == ("bb", "a", T0)
    [wild] = store.find_targets("alice", "*.example")
    assert wild.next_probe is None
    # a later submission: the sooner next probe wins, the fingerprint change restarts grace
    store.commit_batch([], [_submission("alice", "c4", T0 + 60,
                                        _upsert("alice", "a.example", T0 + 60, fingerprint="cc"))])
    [a] = store.find_targets("alice", "a.example")
    assert (a.last_submitted, a.next_probe, a.expected_since) == (T0 + 60, T0, T0 + 60)
    assert a.lineage == "a"  # not named: kept
    assert store.count_targets("alice") == 2
    stored = store.submissions("alice")
    assert [(s.client_id, s.domains, s.client) for s in stored] == [
        ("c1", "a.example *.example", "test/1"), ("c2", "a.example", "test/1"),
        ("c3", "", "test/1"), ("c4", "a.example", "test/1")]
    assert store.submissions("bob") == [] and len(store.submissions()) == 4
    assert store.existing_targets("alice", {("a.example", 443, "tls"), ("b.example", 443, "tls")}
                                  ) == {("a.example", 443, "tls")}


# -- auditing ------------------------------------------------------------------------------

def test_due_targets_record_probe_and_history(store: Store) -> None:
    a, b = _add(store, "alice", "a.example", "b.example")
    assert [t.domain for t in store.due_targets(T0, 10)] == ["a.example", "b.example"]
    assert store.due_targets(T0 - 1, 10) == [] and store.next_due(T0 - 1) == T0
    assert store.last_elapsed(a.id) is None
    seen: list[Target] = []

    def decide(row: Target) -> ProbeWrite:
        seen.append(row)
        return _write(T0 + 10, notices=(Notice("alice", "webhook", "x", '{"n": 1}', T0, T0),))

    done = store.record_probe(a.id, decide)
    assert done is not None and done[0] == a and seen == [a]
    [after] = store.targets_by_id([a.id])
    assert (after.state, after.status, after.last_probe, after.next_probe, after.last_good,
            after.state_since, after.reasons) == ("ok", "ok", T0 + 10, T0 + 3610, T0 + 10,
                                                  T0 + 10, "r1\nr2")
    assert store.last_elapsed(a.id) == 0.5
    [result] = store.recent_results(a.id)
    assert (result.time, result.status, result.fingerprint, result.deployed) == (
        T0 + 10, "ok", "ab" * 32, 1)
    assert [n.payload for n in store.notifications("alice")] == ['{"n": 1}']
    assert store.next_due(T0) == T0 + 3610 and store.count_due(T0) == 1
    # a decide that raises writes nothing
    with pytest.raises(RuntimeError):
        store.record_probe(b.id, lambda row: (_ for _ in ()).throw(RuntimeError("x")))
    assert store.recent_results(b.id) == []
    # history kept to ``keep`` results
    for i in range(4):
        store.record_probe(a.id, lambda row, i=i: _write(T0 + 20 + i, keep=2))
    assert [r.time for r in store.recent_results(a.id)] == [T0 + 22, T0 + 23]
    # retirement removes the target and its history, and still queues its notices
    retired = store.record_probe(b.id, lambda row: _write(
        T0 + 30, notices=(Notice("alice", "email", "a@example", "{}", T0, T0),), retire=True))
    assert retired is not None and store.targets_by_id([b.id]) == []
    assert len(store.notifications()) == 2
    assert store.record_probe(b.id, decide) is None  # gone


def test_two_writers_of_one_target_see_each_other(store: Store) -> None:
    """record_probe reads the target and writes from what it read: a second writer (another
    node's auditor, say) waits for the first to commit, then reads its write, so no update
    is lost (SQLite: BEGIN IMMEDIATE; PostgreSQL: SELECT ... FOR UPDATE)."""
    [a] = _add(store, "alice", "a.example")
    read: list[int] = []

    def decide(row: Target) -> ProbeWrite:
        read.append(row.failures)
        time.sleep(0.3)  # the other writer starts meanwhile
        return replace(_write(T0 + 10, status="unknown"), failures=row.failures + 1)

    threads = [threading.Thread(target=store.record_probe, args=(a.id, decide))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(read) == [0, 1]
    assert store.targets_by_id([a.id])[0].failures == 2


def test_a_submission_during_a_probe_keeps_the_sooner_probe(store: Store) -> None:
    [a] = _add(store, "alice", "a.example")
    # submitted again while the probe ran (after ``started``): its next probe stands
    store.commit_batch([], [_submission("alice", "again", T0 + 5,
                                        _upsert("alice", "a.example", T0 + 5))])
    store.record_probe(a.id, lambda row: _write(T0 + 5.5, nxt=T0 + 9999))  # started T0 + 4.5
    assert store.targets_by_id([a.id])[0].next_probe == T0
    # no submission since it started: the probe's own next time
    store.record_probe(a.id, lambda row: _write(T0 + 10, nxt=T0 + 9999))
    assert store.targets_by_id([a.id])[0].next_probe == T0 + 9999


# -- notifications ---------------------------------------------------------------------------

def test_notification_outbox(store: Store) -> None:
    store.enqueue([Notice("alice", "webhook", "w", json.dumps({"i": i}), T0, T0 + 5)
                   for i in range(3)] + [Notice("bob", "email", "b@example", "{}", T0, T0 + 50)])
    store.enqueue([])
    assert store.due_destinations(T0, 10) == []
    assert store.due_destinations(T0 + 5, 10) == [("alice", "webhook", "w")]
    assert store.next_notification() == T0 + 5
    pending = store.pending("alice", "webhook", "w")
    assert [json.loads(n.payload)["i"] for n in pending] == [0, 1, 2]
    ids = [n.id for n in pending]
    store.hold_notifications(ids[:1], T0 + 100)
    assert store.pending("alice", "webhook", "w")[0].next_attempt == T0 + 100
    store.mark_sent(ids[:1], T0 + 101)
    store.mark_failed(ids[1:], T0 + 200, "refused", 2, T0 + 102)
    assert store.notification_counts() == (3, 0)
    store.mark_failed(ids[1:], T0 + 400, "refused again", 2, T0 + 202)
    assert store.notification_counts() == (1, 2)
    done = {n.id: n for n in store.notifications("alice")}
    assert done[ids[0]].sent == T0 + 101 and done[ids[0]].attempts == 1
    assert done[ids[1]].failed == T0 + 202 and done[ids[1]].attempts == 2
    assert done[ids[1]].last_error == "refused again"
    assert store.pending("alice", "webhook", "w") == []
    assert store.next_notification() == T0 + 50


def test_failing_targets_for_reminders(store: Store) -> None:
    a, b = _add(store, "alice", "a.example", "b.example")
    store.record_probe(a.id, lambda row: _write(T0 + 10, "critical", "critical"))
    store.record_probe(b.id, lambda row: _write(T0 + 10))
    assert [t.domain for t in store.failing_targets(("critical",), T0 + 10)] == ["a.example"]
    assert store.failing_targets(("critical",), T0 + 9) == []
    # one reminder a period, whichever node claims it first; a new state starts afresh
    since = store.failing_targets(("critical",), T0 + 10)[0].state_since
    remind = Notice("alice", "webhook", "w", "{}", T0 + 100, T0 + 100)
    assert store.claim_reminder(a.id, since, T0 + 100, [remind]) is True
    assert store.claim_reminder(a.id, since, T0 + 100, [remind]) is False  # another node
    assert store.claim_reminder(a.id, since, T0 + 50, [remind]) is False  # an older period
    assert store.claim_reminder(a.id, (since or 0) - 1, T0 + 200, [remind]) is False  # not now
    assert store.claim_reminder(b.id, None, T0 + 200, [remind]) is False  # not notified
    assert store.failing_targets(("critical",), T0 + 10)[0].reminded == T0 + 100
    assert len([n for n in store.notifications("alice") if n.created == T0 + 100]) == 1
    assert store.claim_reminder(a.id, since, T0 + 200, [remind]) is True  # the next period


# -- targets: the lifecycle commands ------------------------------------------------------

def test_find_list_mute_remove_mark_due(store: Store) -> None:
    _add(store, "alice", "a.example", "b.example", "c.example")
    _add(store, "bob", "a.example")
    store.commit_batch([], [_submission("alice", "w", T0, _upsert("alice", "*.x", T0,
                                                                 next_probe=None))])
    assert [t.account for t in store.find_targets(None, "a.example")] == ["alice", "bob"]
    assert store.find_targets("alice", "a.example", 25) == []
    assert len(store.find_targets("alice", None)) == 4
    assert [t.domain for t in store.list_targets("alice", 2)] == ["*.x", "a.example"]
    assert [t.domain for t in store.list_targets("alice", 10, ("a.example", 443, "tls"))] == [
        "b.example", "c.example"]
    assert [t.domain for t in store.list_targets("alice", domain="b.example")] == ["b.example"]
    assert len(store.list_targets(None)) == 5
    [a] = store.find_targets("alice", "a.example")
    assert store.target(a.id) == a and store.target(a.id, "alice") == a
    assert store.target(a.id, "bob") is None
    store.mute_targets([a.id], T0 + 99)
    assert [t.muted_until for t in store.targets_by_id([a.id])] == [T0 + 99]
    store.mute_targets([a.id], None)
    assert [t.muted_until for t in store.targets_by_id([a.id])] == [None]
    marked = store.mark_due("alice", None, None, None, T0 - 50)
    assert [t.domain for t in marked] == ["a.example", "b.example", "c.example"]  # no wildcard
    assert store.next_due(T0 - 100) == T0 - 50
    assert [t.domain for t in store.mark_due(None, "a.example", 443, "tls", T0 - 60)] == [
        "a.example", "a.example"]
    store.record_probe(a.id, lambda row: _write(T0))
    store.remove_targets([a.id])
    assert store.target(a.id) is None and store.recent_results(a.id) == []
    [b] = store.targets_by_id([a.id, marked[1].id])
    assert (b.domain, b.next_probe) == ("b.example", T0 - 50)  # as marked


# -- read views -----------------------------------------------------------------------------

def test_counts_report_page_and_snapshot(store: Store) -> None:
    targets = _add(store, "alice", "a.example", "b.example", "c.example")
    _add(store, "bob", "d.example")
    store.record_probe(targets[1].id, lambda row: _write(T0 + 1, "critical", "critical"))
    store.record_probe(targets[2].id, lambda row: _write(T0 + 1))
    assert store.state_counts("alice") == {"unknown": 1, "critical": 1, "ok": 1}
    assert store.state_counts(None) == {"unknown": 2, "critical": 1, "ok": 1}
    rows, total = store.report_page("alice", group="none", limit=2)
    assert total == 3 and [r.domain for r in rows] == ["b.example", "a.example"]
    assert rows[0].severity == 0 and rows[0].group_size == 1
    rows, total = store.report_page("alice", states=("ok",), limit=10)
    assert total == 1 and [r.domain for r in rows] == ["c.example"]
    rows, total = store.report_page("alice", search="%", limit=10)
    assert total == 0  # a literal character, not a wildcard
    rows, total = store.report_page(None, search="d.ex", offset=0, limit=10)
    assert [r.account for r in rows] == ["bob"]
    assert store.target_accounts() == ["alice", "bob"]
    with store.snapshot():
        assert store.count_due(T0) == 2


def test_state_mute_counts_and_event_time(store: Store) -> None:
    a, b, _ = _add(store, "alice", "a.example", "b.example", "c.example")
    _add(store, "bob", "a.example")
    store.mute_targets([a.id], T0 + 60)
    store.mute_targets([b.id], T0 - 60)  # ended: not muted now
    assert store.state_mute_counts("alice", T0) == [("unknown", 3, 1)]
    assert store.state_mute_counts("alice", T0, "b.example") == [("unknown", 1, 0)]
    assert store.state_mute_counts(None, T0) == [("unknown", 4, 1)]
    assert store.state_mute_counts("carol", T0) == []
    # the latest submission of the account, lineage and event naming the whole name
    renew = [Submission("alice", f"e{i}", T0 + i, "test", "peer", names, "", "", None, lineage,
                        event, "test/1") for i, (names, lineage, event) in enumerate((
                            ("a.example b.example", "a.example", "renewed"),
                            ("a.example", "a.example", "renewed"),
                            ("xa.example", "a.example", "renewed"),  # not a.example
                            ("a.example", "other", "renewed"),
                            ("a.example", None, "failed"),
                            ("a.example", "a.example", None)), start=1)]
    assert store.commit_batch([], renew) == [True] * len(renew)
    assert store.event_time("alice", "a.example", "renewed", "a.example") == T0 + 2
    assert store.event_time("alice", "a.example", "renewed", "b.example") == T0 + 1
    assert store.event_time("alice", None, "failed", "a.example") == T0 + 5
    assert store.event_time("alice", None, "renewed", "a.example") is None
    assert store.event_time("bob", "a.example", "renewed", "a.example") is None


# -- SQL in one room ---------------------------------------------------------------------

_SQL = re.compile(r"^\s*import sqlite3|^\s*from sqlite3|\.execute\(|executemany\(|executescript\(",
                  re.MULTILINE)


def test_no_module_outside_the_store_speaks_sql() -> None:
    package = Path(__file__).resolve().parent.parent / "certhook"
    rooms = (package / "server" / "store",)
    offenders = sorted(
        str(path.relative_to(package)) for path in package.rglob("*.py")
        if not any(room in path.parents for room in rooms)
        and _SQL.search(path.read_text(encoding="utf-8")))
    assert offenders == []


def test_every_store_method_is_exercised_here() -> None:
    """A method added to the interface gets its test in this file (and so on every engine)."""
    source = Path(__file__).read_text(encoding="utf-8")
    missing = sorted(name for name in Store.__abstractmethods__
                     if f"store.{name}(" not in source and f"opened.{name}(" not in source
                     and f"again.{name}(" not in source and f"url.{name}(" not in source)
    assert missing == []


# -- leases: several nodes on one database (issue 12) ----------------------------------------

def test_claims_lease_each_due_target_to_one_node(store: Store) -> None:
    a, b, c = _add(store, "alice", "a.example", "b.example", "c.example")
    lease = T0 + 120
    assert [t.domain for t in store.claim_targets(T0, 2, "n1", lease)] == [
        "a.example", "b.example"]
    assert [t.id for t in store.claim_targets(T0, 10, "n2", lease)] == [c.id]
    assert store.claim_targets(T0 + 119, 10, "n3", lease) == []  # every lease holds
    # a node records only under its own lease: n2 does not hold a's
    assert store.record_probe(a.id, lambda row: _write(T0 + 10), owner="n2") is None
    assert store.recent_results(a.id) == []
    assert store.record_probe(a.id, lambda row: _write(T0 + 10), owner="n1") is not None
    assert len(store.recent_results(a.id)) == 1
    # n1 stalls past its lease on b: n2 claims it, and n1's late result is dropped
    assert [t.id for t in store.claim_targets(T0 + 121, 1, "n2", T0 + 241)] == [b.id]
    assert store.record_probe(b.id, lambda row: _write(T0 + 130), owner="n1") is None
    assert store.record_probe(b.id, lambda row: _write(T0 + 131), owner="n2") is not None
    assert [r.time for r in store.recent_results(b.id)] == [T0 + 131]
    # no lease now, but a result newer than n1's probe (started T0 + 100): still dropped
    assert store.record_probe(b.id, lambda row: _write(T0 + 132), owner="n1",
                              started=T0 + 100) is None
    # a probe started after the last result, with no lease held (made outside a claim)
    assert store.record_probe(b.id, lambda row: _write(T0 + 141), owner="n1",
                              started=T0 + 140) is not None
    assert [r.time for r in store.recent_results(b.id)] == [T0 + 131, T0 + 141]
    # released unprobed (a full lane, a node stopping): claimable at once
    store.release_targets("n2", [c.id])
    assert [t.id for t in store.claim_targets(T0 + 1, 10, "n3", lease)] == [c.id]
    store.release_targets("n3")
    assert [t.id for t in store.claim_targets(T0 + 1, 10, "n1", lease)] == [c.id]
    # after an outage: every lease of a node but those of the probes it has in flight
    store.mark_due(None, None, None, None, T0 + 200)
    assert len(store.claim_targets(T0 + 200, 10, "n4", T0 + 320)) == 3
    store.release_targets("n4", keep=[a.id])
    assert sorted(t.id for t in store.claim_targets(T0 + 201, 10, "n5", T0 + 320)) == [
        b.id, c.id]


def test_claims_lease_each_notification_destination_to_one_node(store: Store) -> None:
    store.enqueue([Notice("alice", "webhook", "w", json.dumps({"i": i}), T0, T0 + 5)
                   for i in range(2)] + [Notice("bob", "email", "b@example", "{}", T0, T0 + 50)])
    assert store.claim_notifications(T0, 10, "n1", T0 + 60) == []  # nothing due yet
    [group] = store.claim_notifications(T0 + 5, 10, "n1", T0 + 65)
    assert [json.loads(n.payload)["i"] for n in group] == [0, 1]
    assert store.claim_notifications(T0 + 5, 10, "n2", T0 + 65) == []
    # a row queued during n1's delivery waits for it: one digest at a time per destination
    store.enqueue([Notice("alice", "webhook", "w", json.dumps({"i": 2}), T0 + 6, T0 + 6)])
    assert store.claim_notifications(T0 + 6, 10, "n2", T0 + 66) == []
    assert store.next_notification() == T0 + 6
    store.mark_sent([n.id for n in group], T0 + 7)
    [later] = store.claim_notifications(T0 + 7, 10, "n2", T0 + 67)
    assert [json.loads(n.payload)["i"] for n in later] == [2]
    assert store.next_notification() == T0 + 50  # n2's lease (T0 + 67) is later
    # n2 dies before marking it sent: after the lease, another node sends it again
    [bob, again] = store.claim_notifications(T0 + 68, 10, "n3", T0 + 128)
    assert [n.id for n in again] == [n.id for n in later] and bob[0].account == "bob"
    store.release_notifications("n3")
    [bob, alice] = store.claim_notifications(T0 + 68, 10, "n1", T0 + 128)
    assert (bob[0].account, alice[0].account) == ("bob", "alice")  # oldest row first
    store.hold_notifications([bob[0].id], T0 + 500)
    store.mark_failed([alice[0].id], T0 + 70, "refused", 5, T0 + 69)
    [retry] = store.claim_notifications(T0 + 70, 10, "n2", T0 + 130)
    assert [n.id for n in retry] == [alice[0].id]


# -- vantages: each target probed from each named place (issue 12) ----------------------------

def _vantage_write(name: str, now: float, state: str = "ok", nxt: float | None = None
                   ) -> VantageWrite:
    return VantageWrite(name, state, 0 if state == "ok" else 1, state, f"{name} reason",
                        "cd" * 32, 1, 30, now + 30 * 86400, "127.0.0.2", now,
                        now + 3600 if nxt is None else nxt)


def test_vantages_are_given_claimed_and_recorded_per_vantage(store: Store) -> None:
    a, b = _add(store, "alice", "a.example", "b.example")
    [c] = _add(store, "carol", "c.example")
    # alice's targets are probed from two places; carol's from any node, once
    def plan(account: str, domain: str, port: int, protocol: str) -> tuple[str, ...]:
        return ("eu", "us") if account == "alice" else ()

    assert store.sync_vantages(plan, T0 + 1) == 2
    assert store.sync_vantages(plan, T0 + 1) == 0  # done already
    assert [v.vantage for v in store.vantages(a.id)] == ["eu", "us"]
    assert store.vantages(c.id) == []
    # a plain claim no longer takes them; each vantage's node claims its own row
    assert [t.id for t in store.claim_targets(T0 + 2, 10, "n0", T0 + 120)] == [c.id]
    assert [t.id for t in store.claim_vantages("eu", T0 + 2, 10, "n1", T0 + 120)] == [
        a.id, b.id]
    assert store.claim_vantages("eu", T0 + 2, 10, "n2", T0 + 120) == []  # leased
    assert [t.id for t in store.claim_vantages("us", T0 + 2, 1, "n3", T0 + 120)] == [a.id]

    def decide(row: Target, rows: list[Vantage]) -> ProbeWrite:
        assert [v.vantage for v in rows] == ["eu", "us"]
        return replace(_write(T0 + 10, "critical", "critical"), vantage="eu",
                       vantages=(_vantage_write("eu", T0 + 10, "critical", T0 + 500),))

    # recorded only under the vantage row's own lease
    assert store.record_vantage_probe(a.id, decide, "eu", "n3", T0 + 5) is None
    assert store.record_vantage_probe(a.id, decide, "eu", "n1", T0 + 5) is not None
    [result] = store.recent_results(a.id)
    assert (result.vantage, result.state) == ("eu", "critical")
    eu, us = store.vantages(a.id)
    assert (eu.state, eu.time, eu.next_probe, eu.lease_owner) == ("critical", T0 + 10,
                                                                 T0 + 500, None)
    assert (us.state, us.time, us.lease_owner) == ("unknown", None, "n3")
    assert store.target(a.id).state == "critical"  # type: ignore[union-attr]
    # a submission naming a target brings each of its vantages' probes forward; the list
    # is the target's own (a node's start changes it, not a submission from a node that
    # reads another one): no row for "ap", and no list dropped by a node without any
    sub = _submission("alice", "again", T0 + 20,
                      replace(_upsert("alice", "a.example", T0 + 20), vantages=("eu", "ap")))
    assert store.commit_batch([], [sub]) == [True]
    rows = {v.vantage: v for v in store.vantages(a.id)}
    assert sorted(rows) == ["eu", "us"]
    assert rows["eu"].next_probe == T0 + 20  # from T0 + 500
    assert rows["us"].next_probe == T0 + 1  # sooner already: kept
    sub = _submission("alice", "plain", T0 + 21, _upsert("alice", "a.example", T0 + 21))
    assert store.commit_batch([], [sub]) == [True]
    assert store.target(a.id).vantages == "eu,us"  # type: ignore[union-attr]
    # a new target gets the submitting node's list, and a row for each
    sub = _submission("alice", "new", T0 + 22,
                      replace(_upsert("alice", "n.example", T0 + 22), vantages=("eu", "ap")))
    assert store.commit_batch([], [sub]) == [True]
    [n] = store.find_targets("alice", "n.example")
    assert n.vantages == "eu,ap"
    assert {(v.vantage, v.next_probe) for v in store.vantages(n.id)} == {
        ("eu", T0 + 22), ("ap", T0 + 22)}
    store.remove_targets([n.id])
    # a recheck too; releasing gives a vantage's row back at once
    store.release_targets("n3", [a.id])
    assert store.mark_due("alice", "b.example", None, None, T0 + 30)
    assert {v.next_probe for v in store.vantages(b.id)} == {T0 + 30}
    assert [t.id for t in store.claim_vantages("us", T0 + 30, 10, "n1", T0 + 150)] == [
        a.id, b.id]
    # the configuration no longer names them: rows gone, plain claims take them again
    assert store.sync_vantages(None, T0 + 40) == 2
    assert store.vantages(a.id) == []
    assert {t.id for t in store.claim_targets(T0 + 200, 10, "n0", T0 + 300)} >= {a.id, b.id}
    store.remove_targets([a.id])
    assert store.target(a.id) is None


def test_a_silent_vantage_is_found_once(store: Store) -> None:
    [a] = _add(store, "alice", "a.example")
    store.sync_vantages(lambda *target: ("eu", "us"), T0)
    # due at T0; at T0 + 100, the rows due before T0 + 50 that no probe holds
    assert store.silent_vantages(T0 - 1, T0 + 100, 10) == []
    assert sorted(store.silent_vantages(T0 + 50, T0 + 100, 10)) == [(a.id, "eu"), (a.id, "us")]
    store.claim_vantages("eu", T0 + 100, 10, "n1", T0 + 220)  # a probe under way
    assert store.silent_vantages(T0 + 50, T0 + 100, 10) == [(a.id, "us")]

    def silent(row: Target, rows: list[Vantage]) -> ProbeWrite | None:
        us = next(v for v in rows if v.vantage == "us")
        if us.status == SILENT:
            return None  # found by another node meanwhile: nothing written
        mark = replace(_vantage_write("us", T0 + 100, "unknown"), status=SILENT, time=None,
                       next_probe=None)
        return replace(_write(T0 + 100, "unknown", "unknown"), result=False, vantages=(mark,))

    assert store.record_vantage_probe(a.id, silent) is not None
    assert store.record_vantage_probe(a.id, silent) is None
    assert store.recent_results(a.id) == []  # no probe ran: no result
    us = store.vantages(a.id)[1]
    assert (us.status, us.state, us.next_probe, us.time) == (SILENT, "unknown", T0, None)
    assert store.silent_vantages(T0 + 50, T0 + 100, 10) == []


def test_the_partial_index_of_late_vantages_spells_silent_as_the_records_do() -> None:
    from certhook.server.store.schema import INDEXES, NOT_SILENT

    assert f"status <> '{SILENT}'" in NOT_SILENT
    assert next(i for i in INDEXES if i.name == "vantages_late").where == NOT_SILENT


def test_a_batch_that_crossed_another_writers_is_run_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    from certhook.errors import StoreConflict

    real = store._commit_batch  # type: ignore[attr-defined]
    tries: list[int] = []

    def crossed_once(*args: object) -> list[bool]:
        tries.append(1)
        if len(tries) == 1:  # as PostgreSQL's deadlock: rolled back, nothing written
            raise StoreConflict("db = test: deadlock detected")
        return real(*args)  # type: ignore[no-any-return]

    monkeypatch.setattr(store, "_commit_batch", crossed_once)
    sub = _submission("alice", "crossed", T0, _upsert("alice", "x.example", T0))
    assert store.commit_batch([], [sub]) == [True]
    assert len(tries) == 2
    assert [s.client_id for s in store.submissions("alice")] == ["crossed"]
    monkeypatch.setattr(store, "_commit_batch", lambda *args: (_ for _ in ()).throw(
        StoreConflict("db = test: deadlock detected")))
    with pytest.raises(StoreConflict):  # again and again: given up, said once
        store.commit_batch([], [sub])
