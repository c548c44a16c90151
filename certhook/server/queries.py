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
import sqlite3
from datetime import datetime, timezone
from typing import Any

from certhook.errors import ParseError

__all__ = [
    "HISTORY_DEFAULT",
    "HISTORY_MAX",
    "PAGE_DEFAULT",
    "PAGE_MAX",
    "Cursor",
    "account_targets",
    "decode_cursor",
    "domain_history",
    "encode_cursor",
    "iso",
    "recent_results",
    "target_json",
    "target_page",
]

PAGE_DEFAULT = 100  # targets per page of GET /api/v1/domains
PAGE_MAX = 1000
HISTORY_DEFAULT = 60  # results per target in GET /api/v1/domains/NAME
HISTORY_MAX = 500
Cursor = tuple[str, int, str]  # (domain, port, protocol) of the last target shown

_TARGET_COLUMNS = (
    "id, account, domain, port, protocol, lineage, last_event, expected_fingerprint,"
    " expected_since, next_probe, state, state_since, failures, last_probe, status, reasons,"
    " days_left, not_after, issuer, served_fingerprint, deployed, address, last_submitted"
)


def iso(timestamp: float | None) -> str | None:
    """A UNIX time as ISO 8601 UTC with seconds, or None."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_targets(conn: sqlite3.Connection, account: str | None) -> list[sqlite3.Row]:
    """The targets of ``account`` (all accounts for None), by domain, port."""
    sql = f"SELECT {_TARGET_COLUMNS} FROM targets"  # noqa: S608 - constant columns
    if account is None:
        return conn.execute(sql + " ORDER BY account, domain, port, protocol").fetchall()
    return conn.execute(
        sql + " WHERE account = ? ORDER BY domain, port, protocol", (account,)
    ).fetchall()


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


def target_page(conn: sqlite3.Connection, account: str, limit: int = PAGE_DEFAULT,
                after: Cursor | None = None, domain: str | None = None,
                ) -> tuple[list[sqlite3.Row], Cursor | None]:
    """Up to ``limit`` targets of ``account`` (of one ``domain``) after ``after``,
    by domain, port, protocol; and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, PAGE_MAX))
    sql = f"SELECT {_TARGET_COLUMNS} FROM targets WHERE account = ?"  # noqa: S608
    args: list[Any] = [account]
    if domain is not None:
        sql += " AND domain = ?"
        args.append(domain)
    if after is not None:
        sql += " AND (domain, port, protocol) > (?, ?, ?)"
        args.extend(after)
    rows = conn.execute(sql + " ORDER BY domain, port, protocol LIMIT ?",
                        (*args, limit + 1)).fetchall()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], (str(last["domain"]), int(last["port"]), str(last["protocol"]))


def recent_results(conn: sqlite3.Connection, target_id: int, limit: int = 60) -> list[sqlite3.Row]:
    """The last ``limit`` results of a target, oldest first."""
    rows = conn.execute(
        "SELECT time, status, state, reasons, days_left, not_after, issuer, fingerprint,"
        " deployed, address, elapsed FROM results WHERE target = ? ORDER BY time DESC, id DESC"
        " LIMIT ?",
        (target_id, limit),
    ).fetchall()
    return rows[::-1]


def _deployed(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def target_json(row: sqlite3.Row) -> dict[str, Any]:
    """A target with its latest result, as ``GET /api/v1/domains`` shows it."""
    return {
        "domain": row["domain"],
        "port": row["port"],
        "protocol": row["protocol"],
        "state": row["state"],
        "status": row["status"],
        "reasons": [r for r in (row["reasons"] or "").split("\n") if r],
        "days_left": row["days_left"],
        "not_after": iso(row["not_after"]),
        "issuer": row["issuer"],
        "last_probe": iso(row["last_probe"]),
        "next_probe": iso(row["next_probe"]),
        "served_fingerprint": row["served_fingerprint"],
        "expected_fingerprint": row["expected_fingerprint"],
        "expected_since": iso(row["expected_since"]),
        "deployed": _deployed(row["deployed"]),
        "address": row["address"],
        "lineage": row["lineage"],
        "last_event": row["last_event"],
        "last_submitted": iso(row["last_submitted"]),
        "consecutive_failures": row["failures"],
    }


def domain_history(
    conn: sqlite3.Connection, account: str, domain: str, limit: int = HISTORY_DEFAULT,
    targets: int = PAGE_DEFAULT // 10, after: Cursor | None = None,
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """A page of ``targets`` targets of ``domain`` in ``account``, each with its last
    ``limit`` results; and the cursor of the next page (None at the end)."""
    out = []
    limit = max(1, min(limit, HISTORY_MAX))
    rows, cursor = target_page(conn, account, targets, after, domain=domain)
    for row in rows:
        item = target_json(row)
        item["history"] = [
            {
                "time": iso(r["time"]),
                "status": r["status"],
                "state": r["state"],
                "reasons": [x for x in r["reasons"].split("\n") if x],
                "days_left": r["days_left"],
                "not_after": iso(r["not_after"]),
                "issuer": r["issuer"],
                "fingerprint": r["fingerprint"],
                "deployed": _deployed(r["deployed"]),
                "address": r["address"],
                "elapsed": r["elapsed"],
            }
            for r in recent_results(conn, int(row["id"]), limit)
        ]
        out.append(item)
    return out, cursor
