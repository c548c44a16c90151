"""From one probe result to a target's new state and the notices it calls for.

Pure: the target's stored fields and a probe result in, an
:class:`Evaluation` out; ``audit.py`` does the I/O. The rules:

* The probe's status (ok, warning, critical, unknown) is the starting
  point. When a submission told us the fingerprint of the certificate just
  deployed and the endpoint still serves another one once the grace period
  is over, that is its own finding, "renewed but not deployed" (critical).
* A client's ``event failed`` (certbot could not renew) makes an ``ok``
  target a ``warning`` until an ``event deployed`` or ``sync`` replaces it.
* A target leaves ``ok`` only after ``threshold`` consecutive failed probes
  (one timeout is not an outage); one good probe brings it back.
* A notice goes out when the confirmed state differs from the last one
  notified (a failure, an escalation, a recovery), never for the first
  ``ok`` of a new target; an expiry notice goes out once per threshold
  (21, 7, 1 days) per served certificate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from certhook.escape import visible

__all__ = ["Evaluation", "TargetState", "evaluate"]


@dataclass(frozen=True)
class TargetState:
    """What the evaluation needs of a target row."""

    state: str = "unknown"
    failures: int = 0
    notified_state: str | None = None
    notified_days: frozenset[int] = frozenset()
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
    notified_days: frozenset[int]
    notified_for: str | None
    not_deployed: bool = False
    recheck_at: float | None = None
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


def evaluate(
    target: TargetState,
    result: Any,
    now: float,
    grace: float = 3600.0,
    threshold: int = 2,
    expiry_notices: tuple[int, ...] = (21, 7, 1),
) -> Evaluation:
    """The new state of ``target`` after ``result`` (a ProbeResult) arrived at ``now``."""
    status = str(result.status)
    # A reason quotes what the endpoint sent (its certificate's names): shown
    # on one line, so that a newline in a name cannot make a second reason
    # where reasons are stored one per line.
    reasons = [visible(str(r)) for r in (result.reasons or ())]
    if result.error and visible(str(result.error)) not in reasons:
        reasons.append(visible(str(result.error)))
    leaf = result.leaf
    served = getattr(leaf, "fingerprint_sha256", None) if leaf is not None else None
    days_left = result.days_left
    not_after = _timestamp(result.not_after)
    if not_after is None and leaf is not None:
        not_after = _timestamp(getattr(leaf, "not_valid_after_utc", None))

    deployed: bool | None = None
    not_deployed = False
    recheck_at = None
    expected = target.expected_fingerprint
    if expected and served:
        deployed = served == expected
        if not deployed:
            since = target.expected_since or now
            if now - since >= grace:
                not_deployed = True
                status = "critical"
                reasons.insert(0, f"renewed but not deployed: serving {served[:16]}..., the "
                                  f"certificate deployed by certbot is {expected[:16]}...")
            else:
                recheck_at = since + grace
                reasons.append("renewed certificate not served yet (within the grace period)")

    if target.last_event == "failed":
        # The client said certbot failed to renew; what is served may still be
        # fine for a while, but someone should look (until a deployed event).
        reasons.append("certbot reported a failed renewal")
        if status == "ok":
            status = "warning"

    failures = 0 if status == "ok" else target.failures + 1
    confirmed = status == "ok" or failures >= threshold
    state = status if confirmed else target.state

    ev = Evaluation(
        status=status, reasons=reasons, state=state, failures=failures, deployed=deployed,
        served_fingerprint=served, days_left=days_left, not_after=not_after,
        issuer=_issuer(leaf), notified_state=target.notified_state,
        notified_days=target.notified_days, notified_for=target.notified_for,
        not_deployed=not_deployed, recheck_at=recheck_at,
    )
    if confirmed and state != target.notified_state:
        if not (target.notified_state is None and state == "ok"):
            kind = "recovery" if state == "ok" else "problem"
            if not_deployed:
                kind = "not-deployed"
            ev.notices.append({"kind": kind, "state": state,
                               "previous": target.notified_state or "new"})
        ev.notified_state = state

    if served is not None and days_left is not None:
        notified = target.notified_days if served == target.notified_for else frozenset()
        crossed = {t for t in expiry_notices if days_left <= t}
        fresh = crossed - notified
        if fresh:
            ev.notices.append({"kind": "expiry", "state": state, "threshold": min(fresh),
                               "previous": state})
        ev.notified_days = frozenset(notified | crossed)
        ev.notified_for = served
    return ev
