"""One line when the database goes away, one when it is back, and a backoff between.

The auditor, the notifier and the committer keep running while PostgreSQL
is stopped or unreachable (:class:`~certhook.errors.StoreUnavailable`):
they record nothing, log the outage once rather than a traceback per
attempt, retry after a growing pause (:data:`FIRST` doubling up to
:data:`LONGEST` seconds), and say so when the database answers again.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from certhook.errors import StoreUnavailable

__all__ = ["FIRST", "LONGEST", "Outage", "release_leases"]

FIRST = 0.5  # seconds before the first retry
LONGEST = 30.0  # the longest pause between retries


class Outage:
    """The database's state as one component (``who``) sees it."""

    def __init__(self, who: str, log: logging.Logger) -> None:
        self.who = who
        self._log = log
        self._lock = threading.Lock()
        self._pause = 0.0  # 0: the database answers
        self.outages = 0

    @property
    def down(self) -> bool:
        return self._pause > 0

    def failed(self, exc: BaseException) -> float:
        """Note a failure; the seconds to wait before trying again."""
        with self._lock:
            first = self._pause == 0
            self._pause = FIRST if first else min(LONGEST, self._pause * 2)
            pause = self._pause
            if first:
                self.outages += 1
        if first:
            self._log.warning("%s: paused, the database is unavailable (%s); retrying",
                              self.who, exc)
        return pause

    def ok(self) -> None:
        """Note a success: the database answers (again)."""
        if self._pause == 0:
            return
        with self._lock:
            was, self._pause = self._pause, 0.0
        if was:
            self._log.warning("%s: resumed, the database answers again", self.who)


def release_leases(who: str, release: Callable[[], None], log: logging.Logger) -> None:
    """Give back a stopping node's leases, so that the other nodes need not wait for them.

    A connection the database dropped while it was down fails once and is
    reopened by the second try; a database still down gets one line (the leases
    then end with their time), never a traceback.
    """
    for attempt in (1, 2):
        try:
            release()
            return
        except StoreUnavailable as exc:
            if attempt == 2:
                log.warning("%s: leases not given back (%s): they end with their lease time",
                            who, exc)
        except Exception:
            log.exception("%s: giving back the leases", who)
            return
