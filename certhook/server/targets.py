"""Targets as operators manage them: mute times, and a target as listed.

``certhook targets`` and ``/api/v1/targets`` share this; the SQL is in
``certhook/server/store/``. A muted target is still probed and shown, but its notices
are dropped (not sent later) until ``muted_until``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from certhook.errors import ParseError
from certhook.server.store import Target

__all__ = ["label", "parse_until", "target_json"]

# 2026-12-24, 2026-12-24T00:00Z, 2026-12-24T00:00:00+01:00 (UTC if no zone is given)
_WHEN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?"
                   r"(Z|[+-]\d{2}:?\d{2})?$")
_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
MAX_MUTE = 366 * 86400.0  # a mute longer than a year is a removal: say so


def parse_until(text: str, now: float) -> float:
    """A mute's end: a time (ISO 8601, UTC unless a zone is given) or a duration
    from ``now`` (``30m``, ``12h``, ``2d``, ``1w``). ParseError if unreadable, past,
    or more than a year ahead."""
    text = text.strip()
    duration = _DURATION.fullmatch(text.lower())
    if duration:
        until = now + int(duration.group(1)) * _UNITS[duration.group(2)]
    else:
        match = _WHEN.fullmatch(text.upper())
        if not match:
            raise ParseError(f"{text[:40]!r}: not a time (2026-12-24T00:00Z) or a duration"
                             " (30m, 12h, 2d, 1w)")
        zone = match.group(7) or "Z"
        iso = (f"{match.group(1)}-{match.group(2)}-{match.group(3)}T{match.group(4) or '00'}:"
               f"{match.group(5) or '00'}:{match.group(6) or '00'}"
               + ("+00:00" if zone == "Z" else zone[:3] + ":" + zone[-2:]))
        try:
            until = datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp()
        except ValueError:
            raise ParseError(f"{text[:40]!r}: no such date or time") from None
    if until <= now:
        raise ParseError(f"{text[:40]!r}: that is not in the future")
    if until - now > MAX_MUTE:
        raise ParseError(f"{text[:40]!r}: more than a year ahead (remove the target instead)")
    return until


def label(row: Target) -> str:
    """``account host:port/protocol``, control characters escaped for a terminal."""
    text = f"{row.account} {row.domain}:{row.port}/{row.protocol}"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def muted(row: Target, now: float) -> bool:
    return row.muted_until is not None and row.muted_until > now


def target_json(row: Target, now: float) -> dict[str, Any]:
    """A target as ``GET /api/v1/targets`` and ``targets list --json`` show it."""
    from certhook.server.queries import iso

    return {
        "domain": row.domain, "port": row.port, "protocol": row.protocol,
        "state": row.state, "state_since": iso(row.state_since),
        "last_submitted": iso(row.last_submitted), "last_probe": iso(row.last_probe),
        "muted_until": iso(row.muted_until) if muted(row, now) else None,
        "vantages": [v for v in row.vantages.split(",") if v],  # probed from each
    }
