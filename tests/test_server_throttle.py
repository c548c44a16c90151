"""The policy for failed key checks (certhook/server/throttle.py), on a fake clock."""

from __future__ import annotations

import pytest

from certhook.server.throttle import ACCOUNT_FAILURES, FAILURES, WINDOW, Throttle, message


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(throttle: Throttle, address: str, n: int, account: str | None = None) -> None:
    for i in range(n):
        key = f"wrong-{address}-{i}"
        assert throttle.check(address, account, key) == 0
        throttle.done(address, key, ok=False, account=account)


def test_failures_from_one_address_block_it_for_the_window() -> None:
    clock = Clock()
    throttle = Throttle(clock=clock)
    fail(throttle, "192.0.2.1", FAILURES)
    assert throttle.check("192.0.2.1", None, "another") == pytest.approx(WINDOW)
    assert throttle.check("192.0.2.2", None, "valid") == 0  # another address: untouched
    clock.now += WINDOW / 2
    assert throttle.check("192.0.2.1", None, "another") == pytest.approx(WINDOW / 2)
    clock.now += WINDOW / 2 + 0.01
    assert throttle.check("192.0.2.1", None, "another") == 0


def test_a_valid_key_is_never_counted() -> None:
    throttle = Throttle(clock=Clock())
    for _ in range(10 * FAILURES):
        assert throttle.check("192.0.2.1", None, "valid") == 0
        throttle.done("192.0.2.1", "valid", ok=True)


def test_keys_in_flight_count_by_distinct_key() -> None:
    throttle = Throttle(clock=Clock())
    # one client pipelining its one key: never held back
    assert all(throttle.check("192.0.2.1", None, "valid") == 0 for _ in range(1000))
    # one client pipelining guesses: only FAILURES of them are checked at once
    waits = [throttle.check("192.0.2.9", None, f"guess{i}") for i in range(1000)]
    assert waits[:FAILURES] == [0] * FAILURES and set(waits[FAILURES:]) == {1.0}


def test_one_key_in_flight_twice_is_in_flight_until_both_are_done() -> None:
    throttle = Throttle(clock=Clock())
    assert throttle.check("192.0.2.1", None, "same") == 0
    assert throttle.check("192.0.2.1", None, "same") == 0  # same guess from another listener
    throttle.done("192.0.2.1", "same", ok=False)
    for i in range(FAILURES - 2):
        assert throttle.check("192.0.2.1", None, f"other{i}") == 0
    # one failure, one "same" still in flight, FAILURES - 2 others in flight: full
    assert throttle.check("192.0.2.1", None, "one more") == 1.0


def test_an_ipv6_client_counts_by_its_64() -> None:
    throttle = Throttle(clock=Clock())
    for i in range(FAILURES):
        fail(throttle, f"2001:db8:0:1::{i + 1:x}", 1)
    assert throttle.check("2001:db8:0:1:ffff::1", None, "k") > 0
    assert throttle.check("2001:db8:0:2::1", None, "k") == 0
    fail(throttle, "::ffff:192.0.2.7", FAILURES)  # IPv4-mapped is the IPv4 address
    assert throttle.check("192.0.2.7", None, "k") > 0


def test_an_account_named_in_failed_logins_is_throttled_from_everywhere() -> None:
    throttle = Throttle(clock=Clock())
    for i in range(ACCOUNT_FAILURES):
        fail(throttle, f"198.51.100.{i}", 1, account="alice")
    assert throttle.check("203.0.113.1", "alice", "k") > 0
    assert throttle.check("203.0.113.1", "bob", "k") == 0
    assert throttle.check("203.0.113.1", None, "k") == 0  # bearer keys name no account


def test_memory_is_bounded() -> None:
    throttle = Throttle(clock=Clock(), max_tracked=100)
    for i in range(5000):
        fail(throttle, f"10.0.{i // 256}.{i % 256}", 1)
    assert len(throttle._seen) == 100 and not throttle._flying


def test_message() -> None:
    assert message(59.2) == "throttled: too many failed key checks; retry in 60 s"
