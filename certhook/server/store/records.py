"""The records the store returns and takes: frozen dataclasses, mapped from rows once.

Each also reads by column name (``row["state"]``), as the report's templates do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "SEVERITY",
    "SILENT",
    "Account",
    "ActiveKey",
    "Cursor",
    "Notice",
    "Notification",
    "ProbeWrite",
    "ReportRow",
    "Result",
    "Submission",
    "Target",
    "TargetKey",
    "TargetUpsert",
    "Use",
    "Vantage",
    "VantageWrite",
]

#: Severity of each state, most urgent first; the report sorts and groups by it.
SEVERITY = ("critical", "warning", "unknown", "waiting", "ok")
#: The status of a vantage found silent: no result from it long after its probe was due.
SILENT = "silent"
TargetKey = tuple[str, int, str]  # domain, port, protocol
Cursor = tuple[str, int, str]  # (domain, port, protocol) of the last target of a page
Use = tuple[str, str, float]  # (last-use column, account, time) of a key


class _Record:
    """Read access by column name too (``row["state"]``), as the report's templates use."""

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(frozen=True)
class Account(_Record):
    """An account as ``keys list`` shows it: never a key, only dates."""

    name: str
    created: float
    revoked: float | None
    key_created: float | None = None  # the current key's issue (None: the account's)
    last_used: float | None = None  # the current key's last use, to a minute
    old_key_expires: float | None = None  # the previous key works until then
    old_last_used: float | None = None


@dataclass(frozen=True)
class ActiveKey:
    """A key that authenticates now (or until ``expires``), for the writer's cache."""

    key_hash: bytes
    account: str
    expires: float | None  # None: the current key; else the end of a rotation overlap
    column: str  # where its last use is written: "last_used" or "old_last_used"
    last_used: float | None


@dataclass(frozen=True)
class Target(_Record):
    """One audited endpoint of an account, with its latest verdict."""

    id: int
    account: str
    domain: str
    port: int
    protocol: str
    created: float
    last_submitted: float
    lineage: str | None
    last_event: str | None
    expected_fingerprint: str | None
    expected_since: float | None
    next_probe: float | None
    state: str
    state_since: float | None
    notified_state: str | None
    failures: int
    notified_days: str
    notified_for: str | None
    last_probe: float | None
    status: str | None
    reasons: str
    days_left: int | None
    not_after: float | None
    issuer: str | None
    served_fingerprint: str | None
    deployed: int | None
    address: str | None
    acme_server: str | None
    renew_before: int | None
    muted_until: float | None
    last_good: float | None
    chain: str | None = None  # the last chain served, as certhook.server.chain keeps it
    reminded: float | None = None  # the start of the reminder period last reminded
    vantages: str = ""  # the vantages it is probed from, comma-separated ("": any node)


@dataclass(frozen=True)
class ReportRow(Target):
    """A target on a page of the report, with its place in the sort and its group."""

    severity: int = 0
    group_key: Any = None
    group_severity: int = 0
    group_size: int = 1


@dataclass(frozen=True)
class Result(_Record):
    """One probe of a target, as its history keeps it."""

    time: float
    status: str
    state: str
    reasons: str
    days_left: int | None
    not_after: float | None
    issuer: str | None
    fingerprint: str | None
    deployed: int | None
    address: str | None
    elapsed: float | None
    not_before: float | None = None  # the leaf's
    vantage: str | None = None  # where it was probed from (None: any node)


@dataclass(frozen=True)
class VantageWrite(_Record):
    """One vantage's verdict: what a probe from there (or the finding that the vantage
    stopped reporting) writes to its row; ``time`` None leaves its latest result's time
    and ``next_probe`` None its next probe as they were."""

    vantage: str
    state: str
    failures: int
    status: str | None
    reasons: str
    fingerprint: str | None
    deployed: int | None
    days_left: int | None
    not_after: float | None
    address: str | None
    time: float | None  # its latest result (None: none yet)
    next_probe: float | None
    # the expiry notices told of the certificate it saw (written with a result only)
    notified_days: str = ""
    notified_for: str | None = None


@dataclass(frozen=True)
class Vantage(VantageWrite):
    """One vantage of a target as stored: its verdict, and its target, creation and lease."""

    target: int = 0
    created: float = 0.0
    lease_owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True)
class TargetUpsert:
    """A target named by a submission: added, or its client-side facts updated."""

    account: str
    domain: str
    port: int
    protocol: str
    now: float
    lineage: str | None
    event: str | None
    fingerprint: str | None
    expected_since: float | None
    next_probe: float | None  # None: never probed (a wildcard name)
    reasons: str
    acme_server: str | None
    renew_before: int | None
    vantages: tuple[str, ...] = ()  # the account's: probed from each of them


@dataclass(frozen=True)
class Submission:
    """One submission to store, and the targets it names."""

    account: str
    client_id: str
    time: float
    transport: str
    peer: str | None
    domains: str
    ports: str
    protocols: str
    fingerprint: str | None
    lineage: str | None
    event: str | None
    client: str | None
    targets: tuple[TargetUpsert, ...] = ()


@dataclass(frozen=True)
class Notice:
    """A notification to queue for one destination."""

    account: str
    channel: str
    destination: str
    payload: str  # JSON
    created: float
    next_attempt: float


@dataclass(frozen=True)
class Notification(_Record):
    """A queued notification."""

    id: int
    account: str
    channel: str
    destination: str
    payload: str
    created: float
    attempts: int
    next_attempt: float
    sent: float | None
    failed: float | None
    last_error: str | None


@dataclass(frozen=True)
class ProbeWrite:
    """What one probe writes: its result, the target's new state, and its notices.

    ``retire`` deletes the target and its history instead (``result`` and the
    target fields are then ignored; the notices are still queued).
    """

    time: float
    started: float  # a submission or recheck after this asks for a new probe
    status: str
    state: str
    reasons: str
    days_left: int | None
    not_after: float | None
    issuer: str | None
    fingerprint: str | None
    deployed: int | None
    address: str | None
    elapsed: float
    failures: int
    notified_state: str | None
    notified_days: str
    notified_for: str | None
    next_probe: float
    good: bool  # reached a usable certificate: last_good is now
    keep: int = 0  # trim the history to this many results (0: leave it)
    notices: tuple[Notice, ...] = ()
    retire: bool = False
    not_before: float | None = None  # the leaf's
    chain: str | None = None  # the chain served (None: keep the last one known)
    # vantages (issue 12): the result's vantage, the vantage rows to write, and whether
    # there is a result at all (False: a vantage stopped reporting, no probe ran)
    vantage: str | None = None
    vantages: tuple[VantageWrite, ...] = ()
    result: bool = True
