"""certbot's ``renew_before_expiry``: a time interval such as ``30 days``.

The renewal conf's top-level ``renew_before_expiry`` replaces certbot's
default renewal rule (certbot 4.0+ ``renewal.should_autorenew``: renew once
``notAfter < now + interval``). certbot reads it with parsedatetime
(``storage.add_time_interval``): a bare integer is days, otherwise one or
more ``NUMBER UNIT`` terms (``30 days``, ``2 weeks``, ``3 days 12 hours``,
``1.5 days``). The units below are the ones parsedatetime 2.6 reads as
such. certbot reads anything else (``10 hrs``, ``thirty days``) as no time
at all, and then renews only after the certificate has expired; here
anything else (signs, ``ago``, ``in``, commas too) is a ParseError.

Months and years are calendar months and years from *now* in certbot; a
fixed number of seconds is what the protocol carries, so a month counts 30
days and a year 365 (off by a day or two against the calendar).

Pure string code, no ``re``: the deploy hook reads this on every renewal
(tests/test_hook_startup.py holds its imports down).
"""

from __future__ import annotations

from certhook.errors import ParseError
from certhook.names import MAX_RENEW_BEFORE

__all__ = ["MAX_RENEW_BEFORE", "parse_interval"]

_MINUTE = 60
_HOUR = 3600
_DAY = 86400
# parsedatetime 2.6's English units (``pdtLocales/base.py``, ``units``), those
# it really reads: "hrs", "wks", "mths", "yrs" and "mo" it reads as nothing.
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), _MINUTE),
    **dict.fromkeys(("h", "hr", "hour", "hours"), _HOUR),
    **dict.fromkeys(("d", "dy", "day", "days"), _DAY),
    **dict.fromkeys(("w", "wk", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("mth", "month", "months"), 30 * _DAY),
    **dict.fromkeys(("y", "yr", "year", "years"), 365 * _DAY),
}
_MAX_TEXT = 64
_MAX_NUMBER = 12  # characters of one number, "1.5" included
_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyz")


def _seconds(number: str, unit: int) -> int:
    whole, _, fraction = number.partition(".")
    seconds = int(whole or "0") * unit
    if fraction:
        seconds += int(fraction) * unit // 10 ** len(fraction)
    return seconds


def _terms(text: str) -> list[tuple[str, str]]:
    """``[(number, unit), ...]``; ValueError when the text is not such terms."""
    terms: list[tuple[str, str]] = []
    i, end = 0, len(text)
    while i < end:
        while i < end and text[i] == " ":
            i += 1
        start = i
        while i < end and (text[i] in _DIGITS or text[i] == "."):
            i += 1
        number = text[start:i]
        while i < end and text[i] == " ":
            i += 1
        start = i
        while i < end and text[i] in _LETTERS:
            i += 1
        unit = text[start:i]
        if (not number or not unit or len(number) > _MAX_NUMBER or number.count(".") > 1
                or number in (".",) or number.startswith(".") or number.endswith(".")):
            raise ValueError
        terms.append((number, unit))
        while i < end and text[i] == " ":
            i += 1
    return terms


def parse_interval(text: str, source: str | None = None) -> int:
    """``renew_before_expiry`` in whole seconds; ParseError when certbot would
    not read it as an interval (or it is over :data:`MAX_RENEW_BEFORE`)."""
    value = text.strip().lower().replace("\t", " ")
    shown = text[:_MAX_TEXT]
    if value.isascii() and value.isdigit() and len(value) <= _MAX_NUMBER:
        seconds = int(value) * _DAY  # certbot: "If an integer is found with no unit ... days"
    else:
        try:
            if len(value) > _MAX_TEXT or not value.isascii():
                raise ValueError
            terms = _terms(value)
            if not terms or any(unit not in _UNITS for _, unit in terms):
                raise ValueError
        except ValueError:
            raise ParseError(
                f"renew_before_expiry {shown!r} is not a time interval such as '30 days'"
                " (certbot reads it as no time: it renews only after expiry)", source) from None
        seconds = sum(_seconds(number, _UNITS[unit]) for number, unit in terms)
    if seconds > MAX_RENEW_BEFORE:
        raise ParseError(f"renew_before_expiry {shown!r} is over 100 years", source)
    return seconds
