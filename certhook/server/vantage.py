"""Vantage points: one target seen from several places, one verdict (issue 12).

Pure, like ``evaluate.py``: the vantages' latest verdicts in, the target's
out. A node carrying ``[audit] vantage = NAME`` probes the targets of the
accounts whose ``vantages`` name it; each vantage keeps its own state (a
failure is confirmed per vantage, as for a target seen from one place),
and the target's state is the worst of them. Its reasons name the vantage
("as seen from us-east: renewed but not deployed ...; eu-west serves the
new certificate"), and a notice goes out when that worst state changes,
as :func:`~certhook.server.evaluate.evaluate` decides for one place.

A vantage with no result long after its probe was due (``vantage_silent``
past it, no probe of it under way) has stopped reporting: its node is down
or partitioned. That is a finding of its own (``unknown``, "no result from
vantage ..."), not a gap that leaves the others' verdict standing alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from certhook.server.evaluate import WAITING, TargetState, notice_kind
from certhook.server.store.records import SEVERITY, SILENT, Vantage, VantageWrite

__all__ = ["SILENT", "Merged", "is_silent", "merge", "silent_write", "told"]

_NOT_DEPLOYED = "renewed but not deployed"


class _Seen(Protocol):
    """What the merge reads of a vantage: a stored row, or the write just made."""

    @property
    def vantage(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def status(self) -> str | None: ...
    @property
    def reasons(self) -> str: ...
    @property
    def deployed(self) -> int | None: ...
    @property
    def days_left(self) -> int | None: ...
    @property
    def not_after(self) -> float | None: ...
    @property
    def time(self) -> float | None: ...


@dataclass(frozen=True)
class Merged:
    """The target's verdict from its vantages."""

    state: str
    status: str
    reasons: list[str]
    deployed: bool | None  # every vantage serves the deployed certificate (None: unknown)
    not_deployed: bool  # the worst is "renewed but not deployed"
    days_left: int | None  # the fewest any vantage sees
    not_after: float | None
    notified_state: str | None
    notice: dict[str, Any] | None  # the state notice it calls for


def _iso(value: float | None) -> str:
    if value is None:
        return "never"
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def is_silent(row: Vantage, now: float, silent_after: float) -> bool:
    """Whether ``row``'s vantage has stopped reporting: its probe was due ``silent_after``
    ago or longer, and none is under way (no lease holds)."""
    # as Store.silent_vantages compares (due before now - silent_after): the same floats
    return (row.next_probe is not None and row.next_probe <= now - silent_after
            and (row.lease_until is None or row.lease_until <= now))


def silent_write(row: Vantage) -> VantageWrite:
    """The finding for a vantage that stopped reporting; its last result is kept."""
    since = "ever" if row.time is None else f"since {_iso(row.time)}"
    reason = (f"no result from vantage {row.vantage} {since} (a probe was due"
              f" {_iso(row.next_probe)}): its node has stopped probing")
    return VantageWrite(row.vantage, "unknown", row.failures, SILENT, reason, row.fingerprint,
                        row.deployed, row.days_left, row.not_after, row.address, None, None)


def told(rows: Sequence[Vantage], mine: Vantage, served: str | None
         ) -> tuple[str | None, frozenset[str]]:
    """The expiry notices already told of certificate ``served``, by any vantage: as the
    target's ``(notified_for, notified_days)`` for the evaluation of ``mine``'s probe.

    So two places that see one certificate tell each threshold once, and two places
    that see two certificates (one renewed, one not) do not tell each one's thresholds
    again at every probe, as one pair of fields for the target would.
    """
    if served is None:  # nothing served: the evaluation leaves them as they were
        return mine.notified_for, _days(mine.notified_days)
    return served, frozenset(day for v in rows if v.notified_for == served
                             for day in _days(v.notified_days))


def _days(text: str) -> frozenset[str]:
    return frozenset(x for x in text.split(",") if x)


def _rank(seen: _Seen) -> tuple[int, str]:
    state = seen.state if seen.state in SEVERITY else "unknown"
    return SEVERITY.index(state), seen.vantage


def merge(target: TargetState, seen: Sequence[_Seen]) -> Merged | None:
    """The target's verdict from its vantages' (None: no vantage has reported yet).

    A vantage that has not reported yet and is not silent does not count.
    """
    known = sorted((s for s in seen if s.time is not None or s.status == SILENT), key=_rank)
    if not known:
        return None
    worst = known[0]
    reasons: list[str] = []
    for s in known:
        if s.state == "ok" and s.status in (None, "ok"):
            continue
        for line in s.reasons.splitlines():
            reasons.append(line if s.status == SILENT else f"as seen from {s.vantage}: {line}")
    deployed = [s for s in known if s.deployed is not None]
    serving = [s.vantage for s in deployed if s.deployed]
    if serving and len(serving) < len(deployed):
        verb = "serves" if len(serving) == 1 else "serve"
        reasons.append(f"{', '.join(serving)} {verb} the new certificate")
    days = [s.days_left for s in known if s.days_left is not None]
    ends = [s.not_after for s in known if s.not_after is not None]
    not_deployed = worst.reasons.startswith(_NOT_DEPLOYED) and worst.state == "critical"
    state, notified, notice = worst.state, target.notified_state, None
    if state != WAITING and state != notified:
        kind = notice_kind(target, state, not_deployed)
        if kind is not None:
            notice = {"kind": kind, "state": state, "previous": notified or "new"}
        notified = state
    return Merged(
        state=state, status=worst.status or worst.state, reasons=reasons,
        deployed=None if not deployed else len(serving) == len(deployed),
        not_deployed=not_deployed, days_left=min(days) if days else None,
        not_after=min(ends) if ends else None, notified_state=notified, notice=notice)
