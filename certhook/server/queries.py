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
]

PAGE_DEFAULT = 100  # targets per page of GET /api/v1/domains
PAGE_MAX = 1000
HISTORY_DEFAULT = 60  # results per target in GET /api/v1/domains/NAME
HISTORY_MAX = 500
Cursor = tuple[str, int, str]  # (domain, port, protocol) of the last target shown

_TARGET_COLUMNS = (
    "id, account, domain, port, protocol, lineage, last_event, expected_fingerprint,"
    " expected_since, next_probe, state, state_since, failures, last_probe, status, reasons,"
    " days_left, not_after, issuer, served_fingerprint, deployed, address, last_submitted,"
    " muted_until"
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


def target_json(row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
    """A target with its latest result, as ``GET /api/v1/domains`` shows it;
    ``muted_until`` is None unless muted at ``now`` (default: the time now)."""
    import time

    muted = row["muted_until"]
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
        "muted_until": iso(muted) if muted is not None and muted > (
            time.time() if now is None else now) else None,
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


# -- the report page: one page of targets, sorted and grouped in SQL ----------------------

#: Severity of each state, most urgent first; the page sorts and groups by it.
SEVERITY = ("critical", "warning", "unknown", "waiting", "ok")
GROUPINGS = ("lineage", "host", "none")
_T_COLUMNS = ", ".join(f"t.{c.strip()}" for c in _TARGET_COLUMNS.split(","))
_NEVER = 1e18  # sorts a target without a notAfter after every dated one
_SEVERITY_SQL = ("CASE state " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEVERITY))
                 + f" ELSE {len(SEVERITY)} END")
_GROUP_SQL = {"lineage": "coalesce(nullif(lineage, ''), domain)", "host": "domain",
              "none": "id"}


def state_counts(conn: sqlite3.Connection, account: str | None) -> dict[str, int]:
    """How many targets of ``account`` (of all, for None) are in each state."""
    if account is None:
        rows = conn.execute("SELECT state, count(*) FROM targets GROUP BY state")
    else:
        rows = conn.execute("SELECT state, count(*) FROM targets WHERE account = ?"
                            " GROUP BY state", (account,))
    return {str(state): int(n) for state, n in rows}


def _filter(account: str | None, states: tuple[str, ...], search: str
            ) -> tuple[str, list[Any]]:
    where, args = ["1"], []  # type: list[str], list[Any]
    if account is not None:
        where.append("account = ?")
        args.append(account)
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        args.extend(states)
    if search:
        # instr, not LIKE: a % or _ in the search is a character, not a wildcard
        where.append("(instr(domain, ?) > 0 OR instr(lower(coalesce(lineage, '')), ?) > 0)")
        args.extend([search.lower(), search.lower()])
    return " AND ".join(where), args


def report_page(conn: sqlite3.Connection, account: str | None, *, states: tuple[str, ...] = (),
                search: str = "", group: str = "lineage", offset: int = 0,
                limit: int = PAGE_DEFAULT) -> tuple[list[sqlite3.Row], int]:
    """One page of the report: the targets matching ``states`` and ``search``, groups
    (by ``group``) worst first, then by earliest notAfter; in a group, by severity then
    time left. Each row adds ``severity``, ``group_key``, ``group_severity`` and
    ``group_size``. Returns the rows and how many targets match in all.

    Only the page's rows leave SQLite: the sort and the window over the groups run
    in the database, so memory is bounded by ``limit`` whatever the account holds.
    """
    where, args = _filter(account, states, search)
    total = int(conn.execute(f"SELECT count(*) FROM targets WHERE {where}",  # noqa: S608
                             args).fetchone()[0])
    key = _GROUP_SQL.get(group, _GROUP_SQL["lineage"])
    # The sort runs over narrow rows (id and sort keys) and keeps only the top rows
    # (LIMIT); only the page's rows are then read whole. Each group's worst state is a
    # GROUP BY joined back: a window over the groups took twice as long at 100,000.
    if group == "none":  # no groups: nothing to join
        source = ("keyed", "severity AS group_severity, 1 AS group_size,"
                  " left_key AS group_left")
    else:
        source = ("keyed JOIN groups ON keyed.group_key = groups.group_key",
                  "group_severity, group_size, group_left")
    sql = f"""
        WITH keyed AS (
            SELECT id, {_SEVERITY_SQL} AS severity, {key} AS group_key,
                   coalesce(not_after, {_NEVER}) AS left_key, domain, port, protocol
            FROM targets WHERE {where}),
        groups AS (
            SELECT group_key, min(severity) AS group_severity, count(*) AS group_size,
                   min(left_key) AS group_left
            FROM keyed GROUP BY group_key),
        page AS (
            SELECT keyed.id, severity, keyed.group_key, {source[1]}, left_key, domain, port,
                   protocol
            FROM {source[0]}
            ORDER BY group_severity, group_left, keyed.group_key, severity, left_key, domain,
                     port, protocol
            LIMIT ? OFFSET ?)
        SELECT {_T_COLUMNS}, page.severity, page.group_key, page.group_severity,
               page.group_size
        FROM page JOIN targets AS t ON t.id = page.id
        ORDER BY group_severity, group_left, page.group_key, page.severity, page.left_key,
                 page.domain, page.port, page.protocol"""  # noqa: S608 - constants; values bound
    rows = conn.execute(sql, (*args, max(1, min(limit, PAGE_MAX)), max(0, offset))).fetchall()
    return rows, total


def account_target(conn: sqlite3.Connection, account: str, target_id: int
                   ) -> sqlite3.Row | None:
    """Target ``target_id`` if it belongs to ``account``, else None (as if it did not exist)."""
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {_TARGET_COLUMNS} FROM targets WHERE id = ? AND account = ?",  # noqa: S608
        (target_id, account)).fetchone()
    return row


# h1: what every listing shows before its page, and the time of each shown
# target's last renewal event (issue 11.3).

def listing_summary(conn: sqlite3.Connection, account: str | None, now: float,
                    domain: str | None = None) -> dict[str, Any]:
    """``{"total", "states", "muted"}`` of ``account``'s targets (every account's for
    None; of one ``domain`` if given): targets per state (every state of
    :data:`SEVERITY`, 0 if none), and how many are muted at ``now``. One pass by
    the ``(account, domain, ...)`` index, whatever the page shows."""
    where, args = [], [now]  # type: list[str], list[Any]
    if account is not None:
        where.append("account = ?")
        args.append(account)
    if domain is not None:
        where.append("domain = ?")
        args.append(domain)
    clause = " WHERE " + " AND ".join(where) if where else ""
    sql = f"SELECT state, count(*), sum(muted_until > ?) FROM targets{clause} GROUP BY state"  # noqa: S608
    states = dict.fromkeys(SEVERITY, 0)
    total = muted = 0
    for state, n, m in conn.execute(sql, args):
        states[str(state)] = states.get(str(state), 0) + int(n)
        total += int(n)
        muted += int(m or 0)
    return {"total": total, "states": states, "muted": muted}


def event_times(conn: sqlite3.Connection, rows: list[sqlite3.Row]) -> dict[int, float]:
    """For each target of ``rows`` (by id) with a ``last_event``: the time of the
    submission that reported it, the latest of its account with that event naming
    the target's name (in the target's lineage, by the ``submissions_events``
    index). A target whose submission is not found is left out."""
    out: dict[int, float] = {}
    for row in rows:
        if not row["last_event"]:
            continue
        found = conn.execute(
            "SELECT time FROM submissions WHERE account = ? AND lineage IS ?"
            " AND event IS NOT NULL AND event = ?"
            " AND instr(' ' || domains || ' ', ' ' || ? || ' ') > 0"
            " ORDER BY time DESC LIMIT 1",
            (row["account"], row["lineage"], row["last_event"], row["domain"])).fetchone()
        if found is not None:
            out[int(row["id"])] = float(found[0])
    return out
