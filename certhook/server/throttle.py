"""Throttling of failed key checks, per source address and per account.

Without it every listener is a key-validity oracle: thousands of guesses a
second with ``command ping apikey X`` or the report page's Basic login.
The policy (``docs/server.md``, "Failed key checks"):

* After ``FAILURES`` (10) failed key checks from one address within
  ``WINDOW`` (60 s), every further key check from that address is refused
  without being made (``error limit throttled ...`` on the line protocol,
  HTTP 429 with ``Retry-After``) until the oldest of those failures is
  ``WINDOW`` old; then one more try is allowed, and so on: at most
  ``FAILURES`` guesses per ``WINDOW`` per address. An IPv6 address counts
  by its /64, which one host usually has whole.
* After ``ACCOUNT_FAILURES`` (50) failed logins naming one account (HTTP
  Basic names it) within ``WINDOW``, logins to that account are refused the
  same way, from every address. Bearer keys and the line protocol name no
  account, so only the address limit applies to them.
* Checks in flight count too, by distinct key: a client that pipelines a
  thousand guesses in one write gets ``FAILURES`` of them checked, not a
  thousand; a client that pipelines a thousand submissions with its one
  valid key has one key in flight and is never slowed. (A refusal for
  keys in flight says "retry in 1 s": they resolve in milliseconds.)
* A valid key is never slowed: nothing is counted for it.

State is in memory, per process (each gunicorn worker has its own), at
most ``MAX_TRACKED`` addresses and accounts (the least recently failed are
forgotten first), so a flood from many addresses costs bounded memory.
"""

from __future__ import annotations

import collections
import math
import threading
import time
from typing import Callable

from certhook.server.slots import address_key

__all__ = ["ACCOUNT_FAILURES", "FAILURES", "MAX_TRACKED", "WINDOW", "Throttle", "message"]

_IN_FLIGHT = 30.0  # seconds after which a check never reported done stops counting

FAILURES = 10
ACCOUNT_FAILURES = 50
WINDOW = 60.0
MAX_TRACKED = 16384


def message(wait: float) -> str:
    """The refusal's text, for every listener: ``throttled: ...; retry in N s``."""
    return f"throttled: too many failed key checks; retry in {math.ceil(wait)} s"


def _address_key(address: str) -> str:
    # the same key as the per-address connection limit (an IPv6 /64 is one)
    return f"addr {address_key(address)[:64]}"


class Throttle:
    """Counts failed key checks; thread-safe, O(1) per call."""

    def __init__(self, failures: int = FAILURES, window: float = WINDOW,
                 account_failures: int = ACCOUNT_FAILURES, max_tracked: int = MAX_TRACKED,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.window = window
        self.account_failures = account_failures
        self.max_tracked = max_tracked
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict())
        # address -> key -> [checks of it in flight, since when]
        self._flying: dict[str, dict[str, list[float]]] = {}
        self.refused = 0  # key checks refused, for tests and the log

    def _keys(self, address: str, account: str | None) -> list[tuple[str, int]]:
        keys = [(_address_key(address), self.failures)]
        if account is not None:
            keys.append((f"account {account[:200]}", self.account_failures))
        return keys

    def check(self, address: str, account: str | None = None, key: str = "") -> float:
        """Seconds until a check of ``key`` from ``address`` (naming ``account``) may be
        made; 0 if now, and then the check is in flight until :meth:`done`."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            flying = self._flying.get(_address_key(address), {})
            for stale in [k for k, (_, since) in flying.items() if now - since > _IN_FLIGHT]:
                del flying[stale]
            others = len(flying) - (key in flying)
            for name, limit in self._keys(address, account):
                recent = [t for t in self._seen.get(name, ()) if t > now - self.window]
                count = len(recent) + (others if name.startswith("addr ") else 0)
                if len(recent) >= limit:  # until the oldest counted failure is WINDOW old
                    wait = max(wait, recent[len(recent) - limit] + self.window - now)
                elif count >= limit:  # full with checks in flight: they resolve in ms
                    wait = max(wait, 1.0)
            if wait > 0:
                self.refused += 1
                return wait
            entry = self._flying.setdefault(_address_key(address), flying).setdefault(
                key, [0, now])
            entry[0] += 1
        return 0.0

    def done(self, address: str, key: str = "", ok: bool = True,
             account: str | None = None) -> None:
        """The check of ``key`` is over; ``ok`` False when the key was wrong."""
        address_key = _address_key(address)
        now = self._clock()
        with self._lock:  # one step: a failure is in flight or counted, never neither
            flying = self._flying.get(address_key)
            entry = flying.get(key) if flying is not None else None
            if flying is not None and entry is not None:
                entry[0] -= 1
                if entry[0] <= 0:
                    del flying[key]
                if not flying:
                    del self._flying[address_key]
            if not ok:
                self._failed(address, account, now)

    def _failed(self, address: str, account: str | None, now: float) -> None:
        for key, limit in self._keys(address, account):
            times = self._seen.pop(key, None)
            if times is None:
                times = collections.deque(maxlen=limit)
            times.append(now)
            self._seen[key] = times  # most recently failed last
        while len(self._seen) > self.max_tracked:
            self._seen.popitem(last=False)
