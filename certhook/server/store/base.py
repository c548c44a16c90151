"""The audit server's storage interface: the ``Store`` contract.

Every module of the server (committer, auditor, notifier, report, metrics,
recheck, targets, WSGI app) and the commands reach the database through one
:class:`Store`; none of them speaks SQL. Each method is one unit of work: a
method that writes is one transaction, durable when it returns (or raising,
with nothing written). Rows are mapped to the frozen records of
``records.py`` once, in the store.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence

from certhook.server.store.records import (
    Account,
    ActiveKey,
    Cursor,
    Notice,
    Notification,
    ProbeWrite,
    ReportRow,
    Result,
    Submission,
    Target,
    TargetKey,
    Use,
    Vantage,
)

__all__ = ["Store"]


class Store(abc.ABC):
    """The audit server's database. Thread-safe: each thread gets its own connection.

    Every method is one unit of work. A method that writes runs in one
    transaction and is durable when it returns (the commit is on disk): the
    server says ``ok`` only after :meth:`commit_batch` returned. A method that
    only reads sees one consistent state; :meth:`snapshot` makes several reads
    of one thread see the same one.
    """

    # -- accounts and keys ---------------------------------------------------------

    @abc.abstractmethod
    def add_account(self, name: str, now: float | None = None) -> str:
        """Create account ``name`` and return its new key (shown once, never stored).
        UsageError for a bad or taken name."""

    @abc.abstractmethod
    def rotate_key(self, name: str, overlap: float,
                   now: float | None = None) -> tuple[str, float | None]:
        """A new key for ``name``, and until when the old one keeps working (None: not at
        all). One transaction. UsageError if there is no such account."""

    @abc.abstractmethod
    def list_accounts(self) -> list[Account]:
        """Every account, by name."""

    @abc.abstractmethod
    def revoke_account(self, name: str, now: float | None = None) -> bool:
        """Revoke the keys of ``name``; False if there is no such active account."""

    @abc.abstractmethod
    def authenticate(self, key: str | None, name: str | None = None,
                     now: float | None = None) -> str | None:
        """The active account whose key is ``key`` (and named ``name``, if given), or None.
        Records the key's last use, at most once a minute."""

    @abc.abstractmethod
    def active_keys(self) -> list[ActiveKey]:
        """The keys that authenticate now (old ones with the end of their overlap)."""

    @abc.abstractmethod
    def accounts_version(self) -> int:
        """A number that changes when another connection has committed (KeyCache reloads)."""

    @abc.abstractmethod
    def record_uses(self, uses: Sequence[Use]) -> None:
        """Write last uses of keys; skipped when the database is busy (it is a hint)."""

    # -- submissions -----------------------------------------------------------------

    @abc.abstractmethod
    def count_targets(self, account: str) -> int:
        """How many targets ``account`` has."""

    @abc.abstractmethod
    def existing_targets(self, account: str, keys: set[TargetKey]) -> set[TargetKey]:
        """Those of ``keys`` that ``account`` already has as targets."""

    @abc.abstractmethod
    def commit_batch(self, uses: Sequence[Use], submissions: Sequence[Submission]) -> list[bool]:
        """Store a batch of submissions and upsert their targets in ONE transaction,
        durable when it returns; write ``uses`` in it too. Returns, per submission,
        whether it was new (False: a retry of one stored before, left as it was).
        The targets of new submissions are upserted as if one after the other."""

    @abc.abstractmethod
    def submissions(self, account: str | None = None) -> list[Submission]:
        """The stored submissions (of ``account``), in the order stored; their ``targets``
        empty. Reads them all: for checks and exports, not for a request."""

    # -- auditing ----------------------------------------------------------------------

    @abc.abstractmethod
    def due_targets(self, now: float, limit: int) -> list[Target]:
        """Up to ``limit`` targets whose probe is due at ``now``, most overdue first."""

    @abc.abstractmethod
    def claim_targets(self, now: float, limit: int, owner: str, until: float) -> list[Target]:
        """Claim up to ``limit`` due targets for node ``owner`` until ``until``, most
        overdue first, in one transaction: due at ``now`` and not leased (no lease, or
        one that ended by ``now``). Two nodes never claim one target while its lease
        holds; each claim ends at :meth:`record_probe` or :meth:`release_targets`."""

    @abc.abstractmethod
    def release_targets(self, owner: str, ids: Sequence[int] | None = None,
                        keep: Sequence[int] = ()) -> None:
        """End the leases of ``owner`` on ``ids`` (all of its leases but those on ``keep``
        for None), unprobed; its leases on the vantage rows of those targets too."""

    @abc.abstractmethod
    def next_due(self, now: float) -> float | None:
        """When the next probe after ``now`` is due (None: none scheduled)."""

    @abc.abstractmethod
    def last_elapsed(self, target_id: int) -> float | None:
        """How long the latest probe of a target took (None: none yet)."""

    @abc.abstractmethod
    def record_probe(self, target_id: int, decide: Callable[[Target], ProbeWrite],
                     owner: str | None = None, started: float = 0.0
                     ) -> tuple[Target, ProbeWrite] | None:
        """Read the target, let ``decide`` evaluate it, write what it returns and end
        its lease: one transaction, no other writer between the read and the write.
        None if the target is gone or, with ``owner``, if the result no longer counts:
        the lease is another node's (it claimed the target after ``owner``'s lease ran
        out), or no lease is held and a result was recorded after ``started`` (the
        probe's start): nothing is written, and the newer result stands."""

    # -- vantages (issue 12) -----------------------------------------------------------

    @abc.abstractmethod
    def sync_vantages(self, plan: Callable[[str, str, int, str], Sequence[str]] | None,
                      now: float) -> int:
        """Give every probed target the vantages ``plan(account, domain, port, protocol)``
        names (None: no target has any; an empty list: probed from any node, once): a
        new vantage's row is due at ``now``, the row of a vantage no longer named is
        deleted; one transaction. How many targets changed."""

    @abc.abstractmethod
    def claim_vantages(self, vantage: str, now: float, limit: int, owner: str,
                       until: float) -> list[Target]:
        """As :meth:`claim_targets`, for the rows of ``vantage``: the targets whose probe
        from there is due, each row leased to ``owner`` until ``until``. The claim ends at
        :meth:`record_vantage_probe` or :meth:`release_targets`."""

    @abc.abstractmethod
    def vantages(self, target_id: int) -> list[Vantage]:
        """The vantages of a target, by name."""

    @abc.abstractmethod
    def silent_vantages(self, due_before: float, now: float, limit: int
                        ) -> list[tuple[int, str]]:
        """(target, vantage) of up to ``limit`` rows due before ``due_before`` and not
        leased at ``now`` (no probe from there is under way) that are not found silent
        yet (``status`` other than ``silent``)."""

    @abc.abstractmethod
    def record_vantage_probe(
            self, target_id: int,
            decide: Callable[[Target, list[Vantage]], ProbeWrite | None],
            vantage: str | None = None, owner: str | None = None, started: float = 0.0,
    ) -> tuple[Target, ProbeWrite] | None:
        """As :meth:`record_probe`, for a target probed from vantages: ``decide`` sees the
        target and all its vantage rows and returns the write (its ``vantages`` rows are
        updated too; None writes nothing). With ``vantage`` and ``owner``, the lease
        checked is that vantage's row's (and ended)."""

    # -- notifications ----------------------------------------------------------------

    @abc.abstractmethod
    def enqueue(self, notices: Sequence[Notice]) -> None:
        """Queue notices (one transaction)."""

    @abc.abstractmethod
    def failing_targets(self, states: Sequence[str], since: float) -> list[Target]:
        """Targets in one of ``states`` since ``since`` or before, and notified of it."""

    @abc.abstractmethod
    def claim_reminder(self, target_id: int, state_since: float | None, period: float,
                       notices: Sequence[Notice]) -> bool:
        """Queue ``notices`` (a reminder) if no node has reminded the target of the state it
        entered at ``state_since`` for the period starting at ``period`` yet, and record that
        it has, in one transaction; whether this call did."""

    @abc.abstractmethod
    def due_destinations(self, now: float, limit: int) -> list[tuple[str, str, str]]:
        """(account, channel, destination) with a notification due at ``now``."""

    @abc.abstractmethod
    def pending(self, account: str, channel: str, destination: str) -> list[Notification]:
        """The unsent, not given up notifications of one destination, oldest first."""

    @abc.abstractmethod
    def claim_notifications(self, now: float, limit: int, owner: str, until: float
                            ) -> list[list[Notification]]:
        """Claim for node ``owner`` until ``until`` the pending notifications of up to
        ``limit`` destinations (account, channel, destination) that have one due at
        ``now`` and none leased by another node: every pending, unleased row of each,
        one list per destination, oldest first; one transaction. Each claim ends at
        :meth:`mark_sent`, :meth:`mark_failed`, :meth:`hold_notifications` or
        :meth:`release_notifications`."""

    @abc.abstractmethod
    def release_notifications(self, owner: str) -> None:
        """End every lease of ``owner`` on notifications, unsent."""

    @abc.abstractmethod
    def next_notification(self) -> float | None:
        """When the next pending notification is due (None: nothing pending)."""

    @abc.abstractmethod
    def hold_notifications(self, ids: Sequence[int], until: float) -> None:
        """Postpone notifications to ``until`` (rate limit); ends their leases."""

    @abc.abstractmethod
    def mark_sent(self, ids: Sequence[int], when: float) -> None:
        """Notifications delivered at ``when``; ends their leases."""

    @abc.abstractmethod
    def mark_failed(self, ids: Sequence[int], retry_at: float, error: str, retries: int,
                    now: float) -> None:
        """A failed attempt: retried at ``retry_at``, given up (``failed``) once
        ``retries`` attempts are made; ends their leases."""

    @abc.abstractmethod
    def notifications(self, account: str | None = None) -> list[Notification]:
        """Every notification (of ``account``), queued or done, oldest first."""

    # -- targets: the lifecycle commands -------------------------------------------

    @abc.abstractmethod
    def target(self, target_id: int, account: str | None = None) -> Target | None:
        """Target ``target_id`` (if it belongs to ``account``, when given), or None."""

    @abc.abstractmethod
    def find_targets(self, account: str | None, domain: str | None,
                     port: int | None = None, protocol: str | None = None) -> list[Target]:
        """The targets of ``account`` (every account's for None) matching the name (any
        for None), port and protocol, by account, domain, port, protocol."""

    @abc.abstractmethod
    def list_targets(self, account: str | None, limit: int = 10**9,
                     after: Cursor | None = None, domain: str | None = None
                     ) -> list[Target]:
        """Up to ``limit`` targets of ``account`` (all for None) after ``after`` (one
        account only), of ``domain`` if given, by account, domain, port, protocol."""

    @abc.abstractmethod
    def remove_targets(self, ids: Sequence[int]) -> None:
        """Delete targets and their history, in one transaction."""

    @abc.abstractmethod
    def mute_targets(self, ids: Sequence[int], until: float | None) -> None:
        """Mute targets until ``until`` (None: unmute), in one transaction."""

    @abc.abstractmethod
    def mark_due(self, account: str | None, domain: str | None, port: int | None,
                 protocol: str | None, now: float) -> list[Target]:
        """Make the matching targets (as :meth:`find_targets`; never a wildcard, which is
        not probed) due at ``now``, in one transaction; returns them as they were."""

    @abc.abstractmethod
    def targets_by_id(self, ids: Sequence[int]) -> list[Target]:
        """Those of the targets ``ids`` that exist."""

    # -- read views ------------------------------------------------------------------

    @abc.abstractmethod
    def state_counts(self, account: str | None) -> dict[str, int]:
        """How many targets of ``account`` (of all, for None) are in each state."""

    @abc.abstractmethod
    def state_mute_counts(self, account: str | None, now: float, domain: str | None = None
                          ) -> list[tuple[str, int, int]]:
        """Per state: (state, targets, of which muted at ``now``) of ``account`` (of
        all, for None), of one ``domain`` if given; one pass, whatever a page shows."""

    @abc.abstractmethod
    def event_time(self, account: str, lineage: str | None, event: str, domain: str
                   ) -> float | None:
        """The time of the latest submission of ``account`` in ``lineage`` that reported
        ``event`` and named ``domain`` (by the ``submissions_events`` index), or None."""

    @abc.abstractmethod
    def recent_results(self, target_id: int, limit: int = 60) -> list[Result]:
        """The last ``limit`` results of a target, oldest first."""

    @abc.abstractmethod
    def report_page(self, account: str | None, *, states: tuple[str, ...] = (),
                    search: str = "", group: str = "lineage", offset: int = 0,
                    limit: int = 100) -> tuple[list[ReportRow], int]:
        """One page of the report (see ``queries.report_page``), and how many match."""

    @abc.abstractmethod
    def target_accounts(self) -> list[str]:
        """The accounts that have targets, by name."""

    @abc.abstractmethod
    def count_due(self, now: float) -> int:
        """How many targets are due at ``now``."""

    @abc.abstractmethod
    def notification_counts(self) -> tuple[int, int]:
        """Notifications (pending, given up)."""

    @abc.abstractmethod
    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """A context in which this thread's reads all see one state (a read transaction)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close every connection; the store is not used after."""
