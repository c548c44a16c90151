"""Read-only views of the database for the API, the report page and ``certhook status``.

The API's listings come in pages (``target_page``, ``domain_history``), so
that no request, however many targets an account holds, reads them all:
a page is at most ``PAGE_MAX`` targets, each with at most ``HISTORY_MAX``
results, and the next page starts after an opaque cursor (the last
target's name, port and protocol), stable while targets are added.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from certhook.errors import ParseError
from certhook.server.store import SEVERITY, Cursor, ReportRow, Result, Store, Target, Vantage

__all__ = [
    "GROUPINGS",
    "HISTORY_DEFAULT",
    "HISTORY_MAX",
    "PAGE_DEFAULT",
    "PAGE_MAX",
    "SEVERITY",
    "Cursor",
    "account_target",
    "account_targets",
    "decode_cursor",
    "domain_history",
    "encode_cursor",
    "event_times",
    "iso",
    "listing_summary",
    "recent_results",
    "report_page",
    "state_counts",
    "target_json",
    "target_page",
    "vantage_json",
]

PAGE_DEFAULT = 100  # targets per page of GET /api/v1/domains
PAGE_MAX = 1000
HISTORY_DEFAULT = 60  # results per target in GET /api/v1/domains/NAME
HISTORY_MAX = 500


def iso(timestamp: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC with seconds, or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_targets(db: Store, account: str | None) -> list[Target]:
    """The targets of ``account`` (all accounts for None), by domain, port."""
    return db.list_targets(account)


def encode_cursor(cursor: Cursor) -> str:
    """An opaque, URL-safe form of a cursor."""
    raw = json.dumps(list(cursor), separators=(",", ":")).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(text: str) -> Cursor:
    """A cursor from :func:`encode_cursor`; ParseError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ParseError("bad cursor") from None
    if (not isinstance(value, list) or len(value) != 3 or not isinstance(value[0], str)
            or type(value[1]) is not int or not isinstance(value[2], str)):
        raise ParseError("bad cursor")
    return value[0], value[1], value[2]


def target_page(db: Store, account: str, limit: int = PAGE_DEFAULT,
                after: Cursor | None = None, domain: str | None = None,
                ) -> tuple[list[Target], Cursor | None]:
    """Up to ``limit`` targets of ``account`` (of one ``domain``) after ``after``,
    by domain, port, protocol; and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, PAGE_MAX))
    rows = db.list_targets(account, limit + 1, after, domain)
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], (last.domain, last.port, last.protocol)


def recent_results(db: Store, target_id: int, limit: int = 60) -> list[Result]:
    """The last ``limit`` results of a target, oldest first."""
    return db.recent_results(target_id, limit)


def _deployed(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def target_json(row: Target, now: float | None = None) -> dict[str, Any]:
    """A target with its latest result, as ``GET /api/v1/domains`` shows it;
    ``muted_until`` is None unless muted at ``now`` (default: the time now)."""
    import time

    muted = row.muted_until
    return {
        "domain": row.domain,
        "port": row.port,
        "protocol": row.protocol,
        "state": row.state,
        "status": row.status,
        "reasons": [r for r in (row.reasons or "").split("\n") if r],
        "days_left": row.days_left,
        "not_after": iso(row.not_after),
        "issuer": row.issuer,
        "last_probe": iso(row.last_probe),
        "next_probe": iso(row.next_probe),
        "served_fingerprint": row.served_fingerprint,
        "expected_fingerprint": row.expected_fingerprint,
        "expected_since": iso(row.expected_since),
        "deployed": _deployed(row.deployed),
        "address": row.address,
        "lineage": row.lineage,
        "last_event": row.last_event,
        "last_submitted": iso(row.last_submitted),
        "consecutive_failures": row.failures,
        "muted_until": iso(muted) if muted is not None and muted > (
            time.time() if now is None else now) else None,
        "vantages": [v for v in row.vantages.split(",") if v],  # probed from each (issue 12)
    }


def vantage_json(v: Vantage) -> dict[str, Any]:
    """One vantage of a target with its latest verdict, as the domain history shows it."""
    return {
        "vantage": v.vantage, "state": v.state, "status": v.status,
        "reasons": [r for r in v.reasons.split("\n") if r], "last_probe": iso(v.time),
        "next_probe": iso(v.next_probe), "fingerprint": v.fingerprint,
        "deployed": _deployed(v.deployed), "days_left": v.days_left,
        "not_after": iso(v.not_after), "address": v.address,
    }


def domain_history(
    db: Store, account: str, domain: str, limit: int = HISTORY_DEFAULT,
    targets: int = PAGE_DEFAULT // 10, after: Cursor | None = None,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """A page of ``targets`` targets of ``domain`` in ``account``, each with its last
    ``limit`` results; and the cursor of the next page (None at the end)."""
    out = []
    limit = max(1, min(limit, HISTORY_MAX))
    rows, cursor = target_page(db, account, targets, after, domain=domain)
    for row in rows:
        item = target_json(row)
        if row.vantages:
            item["vantage_states"] = [vantage_json(v) for v in db.vantages(row.id)]
        item["history"] = [
            {
                "time": iso(r.time),
                "status": r.status,
                "state": r.state,
                "reasons": [x for x in r.reasons.split("\n") if x],
                "days_left": r.days_left,
                "not_after": iso(r.not_after),
                "issuer": r.issuer,
                "fingerprint": r.fingerprint,
                "deployed": _deployed(r.deployed),
                "address": r.address,
                "elapsed": r.elapsed,
                "vantage": r.vantage,
            }
            for r in recent_results(db, row.id, limit)
        ]
        out.append(item)
    return out, cursor


# -- the report page: one page of targets, sorted and grouped in SQL ----------------------

GROUPINGS = ("lineage", "host", "none")


def state_counts(db: Store, account: str | None) -> dict[str, int]:
    """How many targets of ``account`` (of all, for None) are in each state."""
    return db.state_counts(account)


def report_page(db: Store, account: str | None, *, states: tuple[str, ...] = (),
                search: str = "", group: str = "lineage", offset: int = 0,
                limit: int = PAGE_DEFAULT) -> tuple[list[ReportRow], int]:
    """One page of the report: the targets matching ``states`` and ``search``, groups
    (by ``group``) worst first, then by earliest notAfter; in a group, by severity then
    time left. Each row adds ``severity``, ``group_key``, ``group_severity`` and
    ``group_size``. Returns the rows and how many targets match in all.

    Only the page's rows leave the database, so memory is bounded by ``limit``.
    """
    return db.report_page(account, states=states, search=search, group=group,
                          offset=max(0, offset), limit=max(1, min(limit, PAGE_MAX)))


def account_target(db: Store, account: str, target_id: int) -> Target | None:
    """Target ``target_id`` if it belongs to ``account``, else None (as if it did not exist)."""
    return db.target(target_id, account)


def listing_summary(db: Store, account: str | None, now: float,
                    domain: str | None = None) -> dict[str, Any]:
    """``{"total", "states", "muted"}`` of ``account``'s targets (every account's for
    None; of one ``domain`` if given): targets per state (every state of
    :data:`SEVERITY`, 0 if none), and how many are muted at ``now``."""
    states = dict.fromkeys(SEVERITY, 0)
    total = muted = 0
    for state, n, m in db.state_mute_counts(account, now, domain):
        states[state] = states.get(state, 0) + n
        total += n
        muted += m
    return {"total": total, "states": states, "muted": muted}


def event_times(db: Store, rows: Sequence[Target]) -> dict[int, float]:
    """For each target of ``rows`` (by id) with a ``last_event``: the time of the
    submission that reported it (see :meth:`Store.event_time`). A target whose
    submission is not found is left out."""
    out: dict[int, float] = {}
    for row in rows:
        if row.last_event:
            found = db.event_time(row.account, row.lineage, row.last_event, row.domain)
            if found is not None:
                out[row.id] = found
    return out
