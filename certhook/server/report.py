"""The report page (``GET /``) and the terminal table of ``certhook status``.

Server-rendered, no script, no build step: filters and search are plain
GET forms, pages are links. Every value that came from a client or a remote
certificate goes through ``certhook.escape`` (``for_html`` on the page:
markup escaped and control characters shown; ``for_terminal`` in the text
table, so a certificate cannot clear the screen of ``certhook status``).
Sorting, grouping and paging happen in SQL (:func:`queries.report_page`):
a page reads its 100 rows and their recent history, never the whole account.
The detail page of one target is :mod:`certhook.server.report_detail`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from certhook.escape import for_html, for_terminal
from certhook.server import queries
from certhook.server.store import Store, Target

__all__ = ["COLOURS", "CSP", "MEANING", "PAGE_SIZE", "Filters", "muted_until", "render_page",
           "render_text", "sparkline"]

PAGE_SIZE = 100
# waiting (for deployment) is purple, not blue: a blue state would read as a link
COLOURS = {"ok": "#2e7d32", "warning": "#f9a825", "critical": "#c62828", "unknown": "#757575",
           "waiting": "#6a1b9a"}
#: What each state means, as the summary bar and the rows say it (title, marker).
MEANING = {"ok": "ok", "warning": "expires soon or a minor finding",
           "critical": "expired, failing or a serious finding",
           "unknown": "not probed yet or unreachable",
           "waiting": "waiting for deployment: certbot renewed, the server does not serve it yet"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;width:100%}
th,td{padding:.3em .5em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}
tr.group td{background:#eef2f5;font-weight:600}
.state{font-weight:600;text-transform:uppercase}
.ok{color:#2e7d32}.warning{color:#b28704}.critical{color:#c62828}.unknown{color:#757575}
.waiting{color:#6a1b9a}
.state.waiting{border:1px dashed #6a1b9a;border-radius:3px;padding:0 .3em;background:#f3e5f5}
.summary a.waiting{border:1px dashed #6a1b9a;background:#f3e5f5}
.summary a.ok{border-left:4px solid #2e7d32}.summary a.warning{border-left:4px solid #f9a825}
.summary a.critical{border-left:4px solid #c62828}.summary a.unknown{border-left:4px solid #757575}
.summary .muted{padding:.3em .8em;color:#555;background:#eceff1;border-radius:4px}
.muted-until{display:inline-block;margin-left:.3em;padding:0 .3em;border-radius:3px;
background:#eceff1;color:#455a64;font-size:12px}
tr.muted td{opacity:.75}
.reasons{color:#555;font-size:12px}
.summary{display:flex;gap:.5em;flex-wrap:wrap;margin:.5em 0}
.summary a{padding:.3em .8em;border-radius:4px;background:#f4f4f4;text-decoration:none}
.summary b{font-size:18px;margin-right:.3em}
.mismatch{color:#c62828;font-weight:600}.match{color:#2e7d32}
code{font-size:12px}
form{margin:.5em 0}
"""
_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode("utf-8")).digest()).decode()
#: The pages' Content-Security-Policy: no script at all; the one inline style by hash.
CSP = (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; img-src 'self' data:;"
       " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class Filters:
    """The page's query parameters, read leniently: anything unknown is ignored."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.states = tuple(s for s in queries.SEVERITY
                            if s in params.get("state", "").split(","))
        self.search = params.get("q", "").strip()[:200]
        group = params.get("group", "lineage")
        self.group = group if group in queries.GROUPINGS else "lineage"
        page = params.get("page", "1")
        self.page = int(page[:9]) if page.isdigit() and page.isascii() and int(page[:9]) else 1

    def query(self, **changes: object) -> str:
        values = {"state": ",".join(self.states), "q": self.search, "group": self.group,
                  "page": str(self.page)}
        values.update({k: str(v) for k, v in changes.items()})
        return "?" + urlencode({k: v for k, v in values.items()
                                if v and not (k == "page" and v == "1")
                                and not (k == "group" and v == "lineage")})


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ago(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return "never"
    seconds = max(0, int(now - timestamp))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def time_left(not_after: float | None, now: float) -> str:
    """Days left, hours when under three days, "expired Nh ago" once past."""
    if not_after is None:
        return ""
    seconds = not_after - now
    if seconds < 0:
        return f"expired {_ago(not_after, now)}"
    if seconds < 3 * 86400:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} d"


def deployed(row: Target) -> str:
    """Whether the certificate certbot deployed is the one served, in words."""
    if row["expected_fingerprint"] is None:
        return "n/a"
    return {None: "pending", 1: "yes", 0: "no"}.get(row["deployed"], "?")


def _fingerprints(row: Target) -> str:
    served, expected = row["served_fingerprint"], row["expected_fingerprint"]

    def short(fingerprint: str | None) -> str:
        return f"<code>{for_html(fingerprint[:12])}</code>" if fingerprint else "none"

    if expected is None:
        return f"{short(served)}<div class=\"reasons\">certbot reported none</div>"
    if served == expected:
        return f'{short(served)} <span class="match">= deployed</span>'
    return (f'{short(served)} <span class="mismatch">&ne; deployed</span> '
            f"{short(expected)}")


def _waiting(row: Target, grace: float) -> str:
    if row["state"] != "waiting" or row["expected_since"] is None:
        return ""
    return for_html(queries.iso(row["expected_since"] + grace) or "")


def _event(row: Target, when: float | None) -> str:
    """The last renewal event and the time of the submission that reported it
    (:func:`queries.event_times`); without one, the event alone."""
    event = row["last_event"]
    if not event:
        return ""
    stamp = queries.iso(when)
    if stamp is None:
        return for_html(event)
    return (f'{for_html(event)} <small><time class="event" datetime="{stamp}">{stamp}</time>'
            "</small>")


def muted_until(row: Target, now: float) -> float | None:
    """When the target's mute ends, if it is muted at ``now``."""
    until = row["muted_until"]
    return float(until) if until is not None and until > now else None


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
        label = for_html(f"{queries.iso(t)}: {status}, {d if d is not None else '?'} days")
        parts.append(f'<circle cx="{x(t):.1f}" cy="{y(d):.1f}" r="2" fill="{colour}">'
                     f"<title>{label}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def head(title: str) -> list[str]:
    """The start of a page: doctype, title, the style the CSP allows by its hash."""
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{for_html(title)}</title><style>{STYLE}</style></head><body>"]





def _summary(summary: dict[str, Any], filters: Filters) -> str:
    links = [f'<a href="{html.escape(filters.query(state="", page=1))}">'
             f"<b>{summary['total']}</b>all</a>"]
    for state in queries.SEVERITY:
        n = summary["states"].get(state, 0)
        label = "waiting for deployment" if state == "waiting" else state
        links.append(f'<a class="{state}" href="{html.escape(filters.query(state=state, page=1))}"'
                     f' title="{MEANING[state]}" data-state="{state}"><b>{n}</b>{label}</a>')
    links.append(f'<span class="muted" data-muted="{summary["muted"]}" title="still probed and'
                 f' shown, not notified"><b>{summary["muted"]}</b>muted</span>')
    return f'<nav class="summary" aria-label="targets per state">{"".join(links)}</nav>'


def _form(filters: Filters) -> str:
    options = "".join(
        f'<option value="{s}"{" selected" if filters.states == (s,) else ""}>{s}</option>'
        for s in ("", *queries.SEVERITY)).replace('<option value="">', '<option value="">any')
    groups = "".join(f'<option value="{g}"{" selected" if filters.group == g else ""}>{g}'
                     "</option>" for g in queries.GROUPINGS)
    return (f'<form method="get" action="/"><label>name <input name="q" type="search" '
            f'value="{for_html(filters.search)}"></label> <label>state <select name="state">'
            f"{options}</select></label> <label>group by <select name=\"group\">{groups}"
            "</select></label> <button>show</button></form>")


_COLUMNS = ("target", "state", "not after", "time left", "served vs deployed",
            "deployment deadline", "last renewal", "last probe", "history")


def render_page(conn: Store, account: str, params: Mapping[str, str] | None = None,
                now: float | None = None, grace: float = 300.0) -> str:
    """A page of the report of ``account`` (only its targets), per ``params``."""
    now = time.time() if now is None else now
    filters = Filters(params or {})
    summary = queries.listing_summary(conn, account, now)
    rows, total = queries.report_page(
        conn, account, states=filters.states, search=filters.search, group=filters.group,
        offset=(filters.page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    events = queries.event_times(conn, rows)
    out = head(f"certhook: {account}")
    out += [f"<h1>certhook report: {for_html(account)}</h1>",
            f"<p>{for_html(queries.iso(now) or '')}</p>", _summary(summary, filters),
            _form(filters)]
    first = (filters.page - 1) * PAGE_SIZE
    shown = f"{first + 1}-{first + len(rows)}" if rows else "0"
    out.append(f'<p id="shown">targets {shown} of {total} matching, {PAGE_SIZE} per page,'
               " worst first.</p>")
    out.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in _COLUMNS)
               + "</tr></thead><tbody>")
    group = None
    for row in rows:
        if filters.group != "none" and row["group_key"] != group:
            group = row["group_key"]
            worst = queries.SEVERITY[min(int(row["group_severity"]), len(queries.SEVERITY) - 1)]
            out.append(f'<tr class="group"><td colspan="{len(_COLUMNS)}">{filters.group} '
                       f"{for_html(group)}: <span class=\"state {worst}\">{worst}</span>"
                       f" ({_plural(int(row['group_size']), 'target')})</td></tr>")
        out.append(_row(conn, row, now, grace, events.get(int(row["id"]))))
    if not rows:
        text = ("No targets yet: point a certhook client at this server with this account's"
                " key." if not summary["total"] else "No target matches.")
        out.append(f'<tr><td colspan="{len(_COLUMNS)}">{text}</td></tr>')
    out.append("</tbody></table>")
    links = []
    if filters.page > 1:
        links.append(f'<a rel="prev" href="{html.escape(filters.query(page=filters.page - 1))}">'
                     "previous page</a>")
    if first + len(rows) < total:
        links.append(f'<a rel="next" href="{html.escape(filters.query(page=filters.page + 1))}">'
                     "next page</a>")
    out.append(f"<p>{' | '.join(links)}</p></body></html>")
    return "\n".join(out)


def _row(conn: Store, row: Target, now: float, grace: float,
         event_time: float | None) -> str:
    state = row["state"] if row["state"] in COLOURS else "unknown"
    until = muted_until(row, now)
    muted = "" if until is None else (
        f'<span class="muted-until" data-muted-until="{queries.iso(until)}">muted until'
        f" {queries.iso(until)}</span>")
    reasons = "".join(f"<div>{for_html(r)}</div>" for r in (row["reasons"] or "").split("\n") if r)
    history = queries.recent_results(conn, int(row["id"]), 30)
    points = [(r["time"], r["days_left"], r["status"]) for r in history]
    return (
        f'<tr class="target{" muted" if muted else ""}" data-state="{state}"><td>'
        f'<a href="/target?id={int(row["id"])}">'
        f'{for_html(row["domain"])}:{int(row["port"])}</a> <small>{for_html(row["protocol"])}'
        f'</small></td><td><span class="state {state}" title="{MEANING[state]}">'
        f'{for_html(row["state"])}</span>{muted}<div class="reasons">{reasons}</div></td>'
        f"<td>{for_html((queries.iso(row['not_after']) or '')[:10])}"
        f'<div class="reasons">{for_html(row["issuer"] or "")}</div></td>'
        f"<td>{time_left(row['not_after'], now)}</td><td>{_fingerprints(row)}</td>"
        f"<td>{_waiting(row, grace)}</td><td>{_event(row, event_time)}</td>"
        f'<td title="{for_html(queries.iso(row["last_probe"]) or "")}">'
        f'{for_html(_ago(row["last_probe"], now))}</td><td>{sparkline(points)}</td></tr>')


def render_text(conn: Store, account: str | None, now: float | None = None,
                limit: int = PAGE_SIZE, page: int = 1, history: int = 20) -> str:
    """The report as a terminal table (all accounts for None): the summary, then one page,
    worst first; the history marks of the rows shown only."""
    now = time.time() if now is None else now
    summary = queries.listing_summary(conn, account, now)
    total = summary["total"]
    counts = ", ".join(f"{summary['states'].get(s, 0)} {s}" for s in queries.SEVERITY)
    rows, _ = queries.report_page(conn, account, group="none", offset=(page - 1) * limit,
                                  limit=limit)
    first = (page - 1) * limit
    lines = [f"{total} targets: {counts}; {summary['muted']} muted",
             f"targets {first + 1}-{first + len(rows)} of {total}, worst first"
             if rows else f"no targets on page {page} of {total}"]
    header = ["account", "target", "state", "left", "not after", "issuer", "last probe",
              "deployed", "history", "muted until"]
    table = [header]
    for row in rows:
        marks = "".join({"ok": ".", "warning": "w", "critical": "C"}.get(r["status"], "?")
                        for r in queries.recent_results(conn, int(row["id"]), history))
        table.append([for_terminal(cell) for cell in (
            row["account"], f"{row['domain']}:{row['port']}/{row['protocol']}", row["state"],
            time_left(row["not_after"], now), (queries.iso(row["not_after"]) or "")[:10],
            (row["issuer"] or "")[:30], _ago(row["last_probe"], now), deployed(row), marks,
            queries.iso(muted_until(row, now)) or "",
        )])
    if not any(r[-1] for r in table[1:]):  # the column only when a row shown is muted
        table = [r[:-1] for r in table]
        header = table[0]
    if account is not None:
        header.pop(0)
        table = [header] + [r[1:] for r in table[1:]]
    if rows:
        widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
        lines += ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in table]
    for row in rows:
        for reason in (row["reasons"] or "").split("\n"):
            if reason and row["state"] != "ok":
                lines.append(for_terminal(f"  {row['domain']}:{row['port']}: {reason}"))
    return "\n".join(lines) + "\n"
