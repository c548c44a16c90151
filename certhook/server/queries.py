"""Read-only views of the database for the API, the report page and ``certhook status``."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from typing import Any

__all__ = ["account_targets", "domain_history", "iso", "recent_results", "target_json"]

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
    conn: sqlite3.Connection, account: str, domain: str, limit: int = 200
) -> list[dict[str, Any]]:
    """Every target of ``domain`` in ``account`` with its last ``limit`` results."""
    out = []
    rows = conn.execute(
        f"SELECT {_TARGET_COLUMNS} FROM targets WHERE account = ? AND domain = ?"  # noqa: S608
        " ORDER BY port, protocol",
        (account, domain),
    ).fetchall()
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
    return out
