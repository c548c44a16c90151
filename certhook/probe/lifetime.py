"""A certificate judged by its own lifetime: the threshold grammar, certbot's
renewal point, and the expiry verdict that the probe and the server share.

Pure: certificates, thresholds and the clock in, a :class:`Validity` out.
``certhook probe`` (through the runner) and ``certhook serve`` (its auditor
runs the same probe, its evaluation reads the same :class:`Validity`) judge
with these functions and no copy of them.

Thresholds (``--warn``, ``--crit``, ``[audit] warn``/``crit``/``expiry_notices``):

* ``25%``: that fraction of the certificate's lifetime (notAfter - notBefore)
  or less left;
* ``21d``, ``36h``, ``90m``, ``600s``: that much time or less left;
* ``21``: a bare number of days, compared as before (whole days left, rounded
  down, at or below it), so that existing monitoring keeps its alerts.

The defaults are relative: warning at 7/30 of the lifetime (23.33 %), critical
at 7/90 (7.78 %): exactly 21 and 7 days on a 90-day certificate, 37 h 20 m and
12 h 27 m on Let's Encrypt's 160-hour ``shortlived`` certificates.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING

from certhook.errors import ParseError
from certhook.probe.checks import Finding

if TYPE_CHECKING:
    from collections.abc import Sequence

    from certhook.x509 import Certificate

__all__ = [
    "DEFAULT_CRIT",
    "DEFAULT_NOTICES",
    "DEFAULT_WARN",
    "Threshold",
    "Validity",
    "describe_left",
    "judge",
    "parse_threshold",
    "parse_thresholds",
    "probe_interval",
    "renewal_point",
]

_DAY = 86400
_UNITS = {"d": _DAY, "h": 3600, "m": 60, "s": 1}
# At most 100,000 days (and 100 %): a bound on the input, far above any lifetime.
_MAX_SECONDS = 100_000 * _DAY
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,4})?)\s*%")
_TIME = re.compile(r"(\d{1,9}(?:\.\d{1,4})?)\s*([dhms])")
_BARE = re.compile(r"\d{1,6}")
_MAX_TEXT = 40

# certbot 4.0+ (certbot/_internal/renewal.py, _default_renewal_time): renew at
# two thirds of the lifetime, at half when the lifetime is under 10 days (the
# source says ``< 10 * 86400``, strictly). A lineage's renew_before_expiry
# replaces that rule (should_autorenew checks it instead of the default).
_CERTBOT_SHORT = 10 * _DAY
# How long past the renewal point before "renewal overdue": certbot.timer
# runs twice a day with up to 12 h of random delay (Debian and upstream's
# snap), so a healthy lineage can be a day past its point before it renews.
# A short window gets a quarter of its renewal time instead, so that the
# finding still comes before the expiry thresholds.
_OVERDUE_AFTER = _DAY
#: The probe interval is at most lifetime / this: a 160-hour certificate is
#: probed at least every hour, a 90-day one every 13.5 h (or the configured
#: interval, when shorter). Never below _MIN_INTERVAL.
INTERVAL_DIVISOR = 160
_MIN_INTERVAL = 300.0


@dataclass(frozen=True)
class Threshold:
    """A point before notAfter: ``fraction`` of the lifetime, or ``seconds``.

    ``whole_days`` marks a bare number of days, which is reached when the
    whole days left (rounded down) are at or below it, as certhook did
    before thresholds had units.
    """

    text: str
    fraction: Fraction | None = None
    seconds: int | None = None
    whole_days: bool = False

    @classmethod
    def days(cls, count: int) -> Threshold:
        """A bare number of days: ``--warn 21``, ``warn_days = 21``."""
        return cls(str(count), seconds=count * _DAY, whole_days=True)

    def seconds_for(self, lifetime: float) -> float:
        """The point, in seconds before notAfter, for a certificate of ``lifetime`` seconds."""
        if self.fraction is not None:
            return float(self.fraction * Fraction(lifetime))
        assert self.seconds is not None
        return float(self.seconds)

    def limit_seconds(self, lifetime: float) -> int:
        """The most whole seconds left at which it is reached (perfdata's "at or below")."""
        if self.whole_days:
            assert self.seconds is not None
            return self.seconds + _DAY - 1  # whole days rounded down: N days 23:59:59
        return math.floor(self.seconds_for(lifetime))

    def reached(self, seconds_left: float, lifetime: float) -> bool:
        """Whether a certificate with ``seconds_left`` (of ``lifetime``) is at or past it."""
        if self.whole_days:
            assert self.seconds is not None
            return math.floor(seconds_left / _DAY) <= self.seconds // _DAY
        return seconds_left <= self.seconds_for(lifetime)

    def describe(self, lifetime: float) -> str:
        """``23.33% (21 days of its 90-day lifetime)``, ``21d``, ``21``."""
        if self.fraction is None:
            return self.text
        return (f"{self.text} ({describe_left(self.seconds_for(lifetime))} of its"
                f" {_span(lifetime)} lifetime)")

    def __str__(self) -> str:
        return self.text


def _percent_text(fraction: Fraction) -> str:
    text = f"{float(fraction * 100):.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


#: The default thresholds: 21 and 7 days on a 90-day certificate.
DEFAULT_WARN = Threshold(_percent_text(Fraction(7, 30)), fraction=Fraction(7, 30))
DEFAULT_CRIT = Threshold(_percent_text(Fraction(7, 90)), fraction=Fraction(7, 90))
#: The server's expiry notices: 21, 7 and 1 days on a 90-day certificate.
DEFAULT_NOTICES = (DEFAULT_WARN, DEFAULT_CRIT,
                   Threshold(_percent_text(Fraction(1, 90)), fraction=Fraction(1, 90)))


def parse_threshold(text: str) -> Threshold:
    """``25%``, ``21d``/``36h``/``90m``/``600s``, or a bare number of days.

    Any string gives a :class:`Threshold` or :class:`ParseError`.
    """
    word = text.strip().lower()
    shown = text.strip()[:_MAX_TEXT]
    percent = _PERCENT.fullmatch(word)
    time = _TIME.fullmatch(word)
    if percent:
        fraction = Fraction(Decimal(percent.group(1))) / 100
        if fraction > 1:
            raise ParseError(f"{shown!r}: a fraction of the lifetime is at most 100%")
        return Threshold(_percent_text(fraction), fraction=fraction)
    if time:
        seconds = Fraction(Decimal(time.group(1))) * _UNITS[time.group(2)]
        if seconds > _MAX_SECONDS:
            raise ParseError(f"{shown!r}: more than 100000 days")
        return Threshold(f"{time.group(1)}{time.group(2)}", seconds=math.ceil(seconds))
    if _BARE.fullmatch(word) and word.isascii():
        if int(word) > _MAX_SECONDS // _DAY:
            raise ParseError(f"{shown!r}: more than 100000 days")
        return Threshold.days(int(word))
    if word.startswith("-"):
        raise ParseError(f"{shown!r}: a threshold must not be negative")
    raise ParseError(f"{shown!r} is not a threshold: give a fraction of the lifetime (25%),"
                     " a time with a unit (21d, 36h, 90m) or a number of days (21)")


def parse_thresholds(text: str) -> tuple[Threshold, ...]:
    """A comma-separated list of thresholds (``expiry_notices``), largest first on a
    90-day certificate, each once."""
    items = [item for item in text.replace(",", " ").split() if item]
    found = {str(t): t for t in (parse_threshold(item) for item in items)}
    return tuple(sorted(found.values(), key=lambda t: -t.seconds_for(90 * _DAY)))


def _span(seconds: float) -> str:
    """A lifetime in its natural unit: ``90-day``, ``160-hour``."""
    days = round(seconds / _DAY)
    if seconds >= 10 * _DAY or (days >= 2 and abs(seconds - days * _DAY) < 3600):
        return f"{days}-day"
    return f"{int(seconds // 3600)}-hour" if seconds >= 3600 else f"{int(seconds // 60)}-minute"


def describe_left(seconds: float) -> str:
    """Time left as text shows it: days from two days up, hours below, minutes under one."""
    seconds = abs(seconds)
    if seconds >= 2 * _DAY:
        count, unit = int(seconds // _DAY), "day"
    elif seconds >= 3600:
        count, unit = int(seconds // 3600), "hour"
    else:
        count, unit = int(seconds // 60), "minute"
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


def renewal_point(not_before: datetime, not_after: datetime,
                  renew_before: float | None = None) -> tuple[datetime, str]:
    """When the ACME client should have renewed, and the rule that says so.

    ``renew_before`` is the lineage's ``renew_before_expiry`` in seconds
    (None: certbot's default rule, by lifetime).
    """
    if renew_before is not None:
        return (not_after - timedelta(seconds=renew_before),
                f"renew_before_expiry {describe_left(renew_before)}")
    lifetime = not_after - not_before
    if lifetime.total_seconds() < _CERTBOT_SHORT:
        return not_before + lifetime / 2, "1/2 of lifetime left"
    return not_before + lifetime * 2 / 3, "1/3 of lifetime left"


@dataclass(frozen=True)
class Validity:
    """The verdict on a leaf's validity at one moment, and the figures behind it.

    ``seconds_left`` is negative once expired; ``renewal_due`` is when the ACME
    client should have renewed (``renewal_rule`` says by which rule), and
    ``renewal_overdue`` whether the served certificate is past that point by
    more than the slack a healthy client needs. ``warn_seconds`` and
    ``crit_seconds`` are the thresholds for this certificate: the most
    seconds left at which each is reached.
    """

    not_before: datetime
    not_after: datetime
    lifetime_seconds: int
    seconds_left: int
    renewal_due: datetime
    renewal_rule: str
    renewal_overdue: bool
    warn_seconds: int
    crit_seconds: int
    findings: tuple[Finding, ...]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _who(cert: Certificate) -> str:
    return f"CN={cert.subject_cn}" if cert.subject_cn else (cert.subject or "(empty subject)")


def _expiry(what: str, after: datetime, now: datetime, lifetime: float, warn: Threshold,
            crit: Threshold) -> list[Finding]:
    left = (after - now).total_seconds()
    if left <= 0:
        when = "just now" if -left < 60 else f"{describe_left(-left)} ago"
        return [Finding("critical", f"{what} expired {when} ({_stamp(after)})")]
    for severity, flag, threshold in (("critical", "--crit", crit), ("warning", "--warn", warn)):
        if threshold.reached(left, lifetime):
            return [Finding(severity, f"{what} expires in {describe_left(left)}"
                                      f" ({_stamp(after)}), at or below {flag}"
                                      f" {threshold.describe(lifetime)}")]
    return []


def _overdue_after(due: datetime, not_after: datetime) -> datetime:
    window = (not_after - due).total_seconds()
    return due + timedelta(seconds=min(_OVERDUE_AFTER, max(window, 0) / 4))


def judge(
    leaf: Certificate,
    others: Sequence[Certificate],
    now: datetime,
    warn: Threshold = DEFAULT_WARN,
    crit: Threshold = DEFAULT_CRIT,
    renew_before: float | None = None,
) -> Validity:
    """The validity verdict on ``leaf`` at ``now``.

    ``others`` is the chain above the leaf that clients use; a chain
    certificate that ends before the leaf is judged by the leaf's thresholds,
    since it is the leaf's service it cuts short. The findings: not yet valid,
    expired, at or below ``crit`` or ``warn``, and "renewal overdue" (a
    warning, from the point ``renewal_point`` gives plus a day's slack, or a
    quarter of the renewal window when that is shorter) while not expired.
    """
    before, after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
    lifetime = max((after - before).total_seconds(), 0.0)
    left = (after - now).total_seconds()
    due, rule = renewal_point(before, after, renew_before)
    overdue = _overdue_after(due, after) <= now < after
    findings: list[Finding] = []
    if now < before:
        findings.append(Finding("critical", f"not yet valid: valid from {_stamp(before)}"))
    else:
        findings += _expiry("certificate", after, now, lifetime, warn, crit)
        if others:
            first = min(others, key=lambda cert: cert.not_valid_after_utc)
            if first.not_valid_after_utc < after:
                findings += _expiry(f"chain certificate {_who(first)}",
                                    first.not_valid_after_utc, now, lifetime, warn, crit)
        if overdue:
            findings.append(Finding("warning", f"renewal overdue: certbot should have renewed"
                                               f" at {due.strftime('%Y-%m-%d %H:%M')} ({rule})"))
    return Validity(
        not_before=before, not_after=after, lifetime_seconds=int(lifetime),
        seconds_left=math.floor(left), renewal_due=due, renewal_rule=rule,
        renewal_overdue=overdue and now >= before,
        warn_seconds=warn.limit_seconds(lifetime), crit_seconds=crit.limit_seconds(lifetime),
        findings=tuple(findings),
    )


def probe_interval(configured: float, lifetime: float | None) -> float:
    """The server's probe interval for a certificate of ``lifetime`` seconds:
    ``min(configured, max(lifetime / 160, 300 s))``; ``configured`` when unknown."""
    if lifetime is None or lifetime <= 0:
        return configured
    return min(configured, max(lifetime / INTERVAL_DIVISOR, _MIN_INTERVAL))
