"""A background thread that sleeps until woken or stopped: the auditor and the notifier."""

from __future__ import annotations

import threading


class Worker:
    """Runs ``_run`` in a daemon thread; ``wake`` ends its wait early, ``stop`` ends it.

    ``_run`` loops until ``_stopping`` is set, waiting on ``_wake`` between rounds.
    """

    thread_name = "certhook-worker"

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def wake(self) -> None:
        """End the current wait now."""
        self._wake.set()
