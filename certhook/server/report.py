"""The report: an HTML page for ``GET /`` and the same table for ``certhook status``.

Server-rendered, no script: every value that came from a client or a
remote certificate goes through ``certhook.escape`` (``for_html`` on the
page: markup escaped and control characters shown; ``for_terminal`` in the
text table, so a certificate cannot clear the screen of ``certhook
status``), and the history of each
target is an inline SVG (days left over time, one dot per probe coloured by
its status).
"""

from __future__ import annotations

import html
import sqlite3
import time
from typing import Any

from certhook.escape import for_html, for_terminal
from certhook.server import queries

__all__ = ["render_page", "render_text", "sparkline"]

COLOURS = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#c62828", "unknown": "#757575"}

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{padding:.35em .6em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.state{font-weight:600;text-transform:uppercase}
.ok{color:#2e7d32}.warning{color:#b28704}.critical{color:#c62828}.unknown{color:#757575}
.reasons{color:#555;font-size:12px}
"""


def _ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int(now - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _deployed(row: sqlite3.Row) -> str:
    if row["expected_fingerprint"] is None:
        return "n/a"
    return {None: "pending", 1: "yes", 0: "no"}[row["deployed"]]


def sparkline(points: list[tuple[float, int | None, str]], width: int = 160,
              height: int = 28) -> str:
    """SVG of (time, days_left, status) points: a line of days left, dots by status."""
    if not points:
        return ""
    t0, t1 = points[0][0], points[-1][0]
    days = [d for _, d, _ in points if d is not None]
    lo, hi = (min(days), max(days)) if days else (0, 1)
    if hi == lo:
        lo, hi = lo - 1, hi + 1

    def x(t: float) -> float:
        return 3 + (width - 6) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)

    def y(d: int | None) -> float:
        if d is None:
            return height - 3
        return 3 + (height - 6) * (1 - (d - lo) / (hi - lo))

    line = " ".join(f"{x(t):.1f},{y(d):.1f}" for t, d, _ in points if d is not None)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="days left over time">'
    ]
    if line:
        parts.append(f'<polyline fill="none" stroke="#90a4ae" stroke-width="1" points="{line}"/>')
    for t, d, status in points:
        colour = COLOURS.get(status, COLOURS["unknown"])
        label = html.escape(f"{queries.iso(t)}: {status}, {d if d is not None else '?'} days")
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(d):.1f}" r="2" fill="{colour}">'
                     f"<title>{label}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def _rows(conn: sqlite3.Connection, account: str | None) -> list[tuple[sqlite3.Row, Any]]:
    return [(row, queries.recent_results(conn, int(row["id"])))
            for row in queries.account_targets(conn, account)]


def render_page(conn: sqlite3.Connection, account: str, now: float | None = None) -> str:
    """The report page of ``account``: only its targets."""
    now = time.time() if now is None else now
    esc = for_html
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>certhook: {esc(account)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>certhook report: {esc(account)}</h1>",
        f"<p>{esc(queries.iso(now) or '')}</p>",
        "<table><thead><tr><th>target</th><th>state</th><th>days left</th><th>issuer</th>"
        "<th>last probe</th><th>deployed cert live</th><th>history</th></tr></thead><tbody>",
    ]
    rows = _rows(conn, account)
    for row, history in rows:
        state = row["state"] if row["state"] in COLOURS else "unknown"
        reasons = "".join(f"<div>{esc(r)}</div>" for r in (row["reasons"] or "").split("\n") if r)
        points = [(r["time"], r["days_left"], r["status"]) for r in history]
        days = "" if row["days_left"] is None else str(int(row["days_left"]))
        out.append(
            f'<tr><td>{esc(row["domain"])}:{int(row["port"])} '
            f'<small>{esc(row["protocol"])}</small></td>'
            f'<td><span class="state {state}">{esc(row["state"])}</span>'
            f'<div class="reasons">{reasons}</div></td>'
            f"<td>{days}</td><td>{esc(row['issuer'] or '')}</td>"
            f'<td title="{esc(queries.iso(row["last_probe"]) or "")}">'
            f'{esc(_ago(row["last_probe"], now))}</td>'
            f"<td>{_deployed(row)}</td><td>{sparkline(points)}</td></tr>"
        )
    if not rows:
        out.append('<tr><td colspan="7">No targets yet: point a certhook client at this '
                   "server with this account's key.</td></tr>")
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def render_text(conn: sqlite3.Connection, account: str | None, now: float | None = None) -> str:
    """The report as a terminal table (all accounts for None)."""
    now = time.time() if now is None else now
    header = ["account", "target", "state", "days", "issuer", "last probe", "deployed",
              "history"]
    table = [header]
    for row, history in _rows(conn, account):
        marks = "".join({"ok": ".", "warning": "w", "critical": "C"}.get(r["status"], "?")
                        for r in history[-20:])
        table.append([for_terminal(cell) for cell in (
            row["account"], f"{row['domain']}:{row['port']}/{row['protocol']}", row["state"],
            "" if row["days_left"] is None else str(row["days_left"]),
            (row["issuer"] or "")[:30], _ago(row["last_probe"], now), _deployed(row), marks,
        )])
    if account is not None:
        header.pop(0)
        table = [header] + [r[1:] for r in table[1:]]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    for row, _ in _rows(conn, account):
        for reason in (row["reasons"] or "").split("\n"):
            if reason and row["state"] != "ok":
                lines.append(for_terminal(f"  {row['domain']}:{row['port']}: {reason}"))
    return "\n".join(lines) + "\n"
