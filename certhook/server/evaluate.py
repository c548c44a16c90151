"""From one probe result to a target's new state and the notices it calls for.

Pure: the target's stored fields and a probe result in, an
:class:`Evaluation` out; ``audit.py`` does the I/O. The rules:

* The probe's status (ok, warning, critical, unknown) is the starting
  point. When a submission told us the fingerprint of the certificate just
  deployed and the endpoint still serves another one, the target is
  ``waiting`` (for deployment, until the end of the grace period: the
  user's own reload hook runs after certhook's); once the grace is over,
  serving another one is its own finding, "renewed but not deployed"
  (critical).
* A client's ``event failed`` (certbot could not renew) makes an ``ok``
  target a ``warning`` at once (it is the client's report, not a probe
  that may have been unlucky) until an ``event deployed`` or ``sync``
  replaces it.
* A target leaves ``ok`` only after ``threshold`` consecutive failed probes
  (one timeout is not an outage); one good probe brings it back.
* A notice goes out when the confirmed state differs from the last one
  notified (a failure, an escalation, a recovery), never for the first
  ``ok`` of a new target, never for ``waiting``; an expiry notice goes out
  once per threshold of ``expiry_notices`` per served certificate, the
  thresholds placed on that certificate's lifetime (by default 21/90, 7/90
  and 1/90 of it: 21, 7 and 1 days of 90, 37 h, 12 h and 1 h 47 m of 160 h).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from certhook.escape import visible
from certhook.probe.lifetime import DEFAULT_NOTICES, Threshold

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["WAITING", "Evaluation", "TargetState", "evaluate", "notice_kind", "waiting_reason"]

#: The state of a target whose renewed certificate is not served yet, within the grace.
WAITING = "waiting"


@dataclass(frozen=True)
class TargetState:
    """What the evaluation needs of a target row."""

    state: str = "unknown"
    failures: int = 0
    notified_state: str | None = None
    notified_days: frozenset[str] = frozenset()  # the expiry notices sent, as thresholds
    notified_for: str | None = None
    expected_fingerprint: str | None = None
    expected_since: float | None = None
    last_event: str | None = None


@dataclass
class Evaluation:
    status: str
    reasons: list[str]
    state: str
    failures: int
    deployed: bool | None
    served_fingerprint: str | None
    days_left: int | None
    not_after: float | None
    issuer: str | None
    notified_state: str | None
    notified_days: frozenset[str]
    notified_for: str | None
    not_deployed: bool = False
    recheck_at: float | None = None
    seconds_left: int | None = None
    lifetime_seconds: int | None = None
    notices: list[dict[str, Any]] = field(default_factory=list)


def _issuer(leaf: Any) -> str | None:
    if leaf is None:
        return None
    issuer = getattr(leaf, "issuer_cn", None) or getattr(leaf, "issuer", None)
    return None if issuer is None else visible(str(issuer))  # the certificate's words


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    return None



def waiting_reason(until: float) -> str:
    """The reason shown while a renewed certificate is not served yet."""
    clock = datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M")
    return f"waiting for deployment until {clock} UTC"


@dataclass(frozen=True)
class _Deployment:
    deployed: bool | None = None
    not_deployed: bool = False  # the grace is over and another certificate is served
    waiting_until: float | None = None  # within the grace, another certificate is served
    reason: str | None = None


def _served_by(result: Any) -> list[tuple[str, str]]:
    """(address, fingerprint) of each address of the result that served a certificate."""
    return [(str(row.address), str(row.fingerprint))
            for row in getattr(result, "addresses", ()) or () if row.fingerprint]


def _deployment(target: TargetState, served: str | None, now: float, grace: float,
                served_by: list[tuple[str, str]] | None = None) -> _Deployment:
    expected = target.expected_fingerprint
    if not (expected and served):
        return _Deployment()
    if served_by and len(served_by) > 1:
        # Several addresses: deployed only when every one serves the new certificate.
        lagging = [address for address, fingerprint in served_by if fingerprint != expected]
        if not lagging:
            return _Deployment(deployed=True)
        where = (f" on {', '.join(lagging)} ({len(served_by) - len(lagging)} of"
                 f" {len(served_by)} addresses serve the new certificate)")
        served = next(fingerprint for _, fingerprint in served_by if fingerprint != expected)
    elif served == expected:
        return _Deployment(deployed=True)
    else:
        where = ""
    since = target.expected_since or now
    if now - since >= grace:
        return _Deployment(False, True, None, (
            f"renewed but not deployed{where}: serving {served[:16]}..., the certificate"
            f" deployed by certbot is {expected[:16]}..."))
    until = since + grace
    return _Deployment(False, False, until, (
        f"{waiting_reason(until)}{where}: serving {served[:16]}..., certbot deployed"
        f" {expected[:16]}..."))


def notice_kind(target: TargetState, state: str, not_deployed: bool) -> str | None:
    """The notice a newly confirmed ``state`` calls for, if any."""
    if state == target.notified_state or state == WAITING:
        return None
    if target.notified_state is None and state == "ok":
        return None  # the first ok of a new target is not news
    if not_deployed:
        return "not-deployed"
    return "recovery" if state == "ok" else "problem"


def _told(threshold: Threshold, notified: frozenset[str], lifetime: float) -> bool:
    """Whether a notice for ``threshold`` went out: its own text, or (rows from
    before thresholds had units) a day count N told of a point no later than it."""
    if str(threshold) in notified:
        return True
    point = threshold.seconds_for(lifetime)
    return any(told.isdigit() and point >= int(told) * 86400 for told in notified
               if threshold.fraction is not None)


def _expiry(target: TargetState, ev: Evaluation,
            expiry_notices: Sequence[Threshold | int]) -> None:
    served, left, lifetime = ev.served_fingerprint, ev.seconds_left, ev.lifetime_seconds
    if served is None or left is None or lifetime is None:
        return
    notified = target.notified_days if served == target.notified_for else frozenset()
    thresholds = [Threshold.days(t) if isinstance(t, int) else t for t in expiry_notices]
    crossed = [t for t in thresholds if t.reached(left, lifetime)]
    fresh = [t for t in crossed if not _told(t, notified, lifetime)]
    if fresh:
        nearest = min(fresh, key=lambda t: t.seconds_for(lifetime))
        ev.notices.append({"kind": "expiry", "state": ev.state, "threshold": str(nearest),
                           "threshold_seconds": nearest.limit_seconds(lifetime),
                           "previous": ev.state})
    ev.notified_days = frozenset(notified | {str(t) for t in crossed})
    ev.notified_for = served


def evaluate(
    target: TargetState,
    result: Any,
    now: float,
    grace: float = 300.0,
    threshold: int = 2,
    expiry_notices: Sequence[Threshold | int] = DEFAULT_NOTICES,
) -> Evaluation:
    """The new state of ``target`` after ``result`` (a ProbeResult) arrived at ``now``.

    The verdict on the certificate's lifetime (expiry thresholds, renewal
    overdue) is the probe's, :func:`certhook.probe.lifetime.judge`; here the
    expiry notices are placed on the same lifetime: ``expiry_notices`` are
    thresholds (an int is a bare number of days).
    """
    status = str(result.status)
    # A reason quotes what the endpoint sent (its certificate's names): shown
    # on one line, so that a newline in a name cannot make a second reason
    # where reasons are stored one per line.
    reasons = [visible(str(r)) for r in (result.reasons or ())]
    if result.error and visible(str(result.error)) not in reasons:
        reasons.append(visible(str(result.error)))
    leaf = result.leaf
    served = getattr(leaf, "fingerprint_sha256", None) if leaf is not None else None
    not_after = _timestamp(result.not_after)
    if not_after is None and leaf is not None:
        not_after = _timestamp(getattr(leaf, "not_valid_after_utc", None))

    dep = _deployment(target, served, now, grace, _served_by(result))
    if dep.not_deployed and dep.reason:
        status = "critical"
        reasons.insert(0, dep.reason)
    elif dep.reason:
        reasons.insert(0, dep.reason)

    reported = False
    if target.last_event == "failed":
        # The client said certbot failed to renew; what is served may still be
        # fine for a while, but someone should look (until a deployed event).
        reasons.append("certbot reported a failed renewal")
        if status == "ok":
            status, reported = "warning", True

    if dep.waiting_until is not None and status != "unknown":
        # The renewal is in flight: neither a failure nor an ok, and no notice.
        failures, state, confirmed = 0, WAITING, False
    else:
        failures = 0 if status == "ok" else target.failures + 1
        confirmed = status == "ok" or reported or failures >= threshold
        state = status if confirmed else target.state

    ev = Evaluation(
        status=status, reasons=reasons, state=state, failures=failures,
        deployed=dep.deployed, served_fingerprint=served, days_left=result.days_left,
        not_after=not_after, issuer=_issuer(leaf), notified_state=target.notified_state,
        notified_days=target.notified_days, notified_for=target.notified_for,
        not_deployed=dep.not_deployed, recheck_at=dep.waiting_until,
        seconds_left=getattr(result, "seconds_left", None),
        lifetime_seconds=getattr(result, "lifetime_seconds", None),
    )
    if confirmed:
        kind = notice_kind(target, state, dep.not_deployed)
        if kind is not None:
            ev.notices.append({"kind": kind, "state": state,
                               "previous": target.notified_state or "new"})
        ev.notified_state = state
    if state != WAITING:
        _expiry(target, ev, expiry_notices)
    return ev
