"""The detail page of one target (``GET /target?id=N``): chain, findings, history, timeline.

The server keeps per probe the leaf's fingerprint, issuer, notBefore and
notAfter (``results``), and per target the chain of the last probe that got
one (subject, issuer, notBefore, notAfter of each: ``certhook.server.chain``).
The timeline draws each certificate as a bar from its notBefore (or, for
results stored before notBefore was kept, the first probe that saw it) to
its notAfter, solid while it was seen, probes as dots coloured by status,
and the moment certbot reported a renewal as a marker.
"""

from __future__ import annotations

import time

from certhook.escape import for_html
from certhook.server import queries
from certhook.server.chain import rows as chain_rows
from certhook.server.report import COLOURS, deployed, head, muted_until, time_left
from certhook.server.store import Result, Store, Target

__all__ = ["ADVICE", "advice", "render_detail", "timeline"]

HISTORY = 200  # probes shown and drawn

#: (how a finding starts, what it means, what to do): the first match explains it.
ADVICE: tuple[tuple[str, str, str], ...] = (
    ("renewed but not deployed",
     "certbot renewed the certificate, but the server still serves the old one.",
     "reload the service that serves it, e.g. systemctl reload nginx (or apache2, postfix,"
     " dovecot); add a deploy hook so certbot does it next time."),
    ("waiting for deployment",
     "certbot renewed the certificate moments ago; the server has until the deadline to"
     " serve it.", "nothing yet; if the deadline passes, reload the service."),
    ("certbot reported a failed renewal",
     "the last certbot run for this lineage failed; the current certificate still counts"
     " down.", "run certbot renew --cert-name LINEAGE by hand and read"
     " /var/log/letsencrypt/letsencrypt.log."),
    ("name mismatch", "the certificate served does not name the host that was asked for.",
     "add the name to the certificate (certbot --expand -d NAME) or fix which certificate"
     " the virtual host serves."),
    ("chain order", "the server sends its chain in the wrong order.",
     "serve fullchain.pem, not cert.pem plus a hand-made chain."),
    ("untrusted", "the chain does not lead to a trusted root.",
     "serve fullchain.pem (the intermediate is missing), or check the CA."),
    ("expired", "the certificate is past its notAfter: clients refuse it.",
     "renew now (certbot renew) and reload the service."),
    ("expires", "the certificate ends soon and no renewal has replaced it yet.",
     "check that certbot's timer runs (systemctl list-timers) and renew."),
    ("renewal overdue", "the certificate is past the point where certbot renews it.",
     "check certbot's timer and its log; renew by hand."),
    ("revoked", "the CA revoked the certificate.", "renew at once and reload the service."),
    ("no result from vantage",
     "the node that probes from this vantage has stopped reporting: it is down, or cut off"
     " from the database; what that place sees now is unknown.",
     "check certhook serve on the node with this [audit] vantage (systemctl status"
     " certhook-server, its log) and its connection to the database."),
    ("the new certificate",
     "from these vantages the renewed certificate is served: the problem is what the"
     " others reach (another address, a geo-DNS, anycast or CDN node).",
     "reload the server the lagging vantage reaches; certhook probe --resolve"
     " NAME=ADDRESS checks one address."),
)
_GENERIC = ("the probe found this.", "check the service and the certificate it serves.")


def advice(finding: str) -> tuple[str, str]:
    """What ``finding`` means and what to do about it."""
    lowered = finding.lower()
    for start, meaning, action in ADVICE:
        if lowered.startswith(start) or start in lowered:
            return meaning, action
    if "timed out" in lowered or "refused" in lowered or "unreachable" in lowered:
        return ("the probe could not reach the service.",
                "check that the service runs and the port is open to this server.")
    return _GENERIC


def timeline(history: list[Result], events: list[tuple[float, str]], now: float,
             width: int = 720) -> str:
    """Inline SVG: one bar per certificate (notBefore, else first seen, to notAfter; solid
    while seen), probes as dots, ``events`` (time, label) as vertical markers."""
    if not history:
        return "<p>No probe yet.</p>"
    # fingerprint -> [first seen, last seen, notAfter, start of the bar]
    certs: dict[str, list[float]] = {}
    for r in history:
        if r.fingerprint:
            seen = certs.setdefault(r.fingerprint, [r.time, r.time, r.not_after or 0, r.time])
            seen[1] = r.time
            seen[2] = max(seen[2], r.not_after or 0)
            if r.not_before is not None:
                seen[3] = min(seen[3], r.not_before)
    t0 = min([history[0].time, *(t for t, _ in events), *(c[3] for c in certs.values())])
    t1 = max([now, history[-1].time, *(c[2] for c in certs.values())])
    span = max(t1 - t0, 1.0)
    bar, top = 16, 20
    height = top + bar * (len(certs) + 1) + 30

    def x(t: float) -> float:
        return float(10 + (width - 20) * (t - t0) / span)

    parts = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}"'
             f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
             ' aria-label="certificates served over time">']
    for i, (fingerprint, (first, last, not_after, start)) in enumerate(certs.items()):
        y = top + i * bar
        end = max(not_after, last)
        label = for_html(f"{fingerprint[:12]}: notBefore {queries.iso(start)}, seen"
                         f" {queries.iso(first)} to {queries.iso(last)}, notAfter"
                         f" {queries.iso(not_after)}")
        parts.append(f'<g class="cert"><title>{label}</title>'
                     f'<rect x="{x(start):.1f}" y="{y}" width="{max(x(end) - x(start), 2):.1f}"'
                     f' height="{bar - 4}" fill="#cfd8dc"/>'
                     f'<rect x="{x(first):.1f}" y="{y}" width="{max(x(last) - x(first), 2):.1f}"'
                     f' height="{bar - 4}" fill="#607d8b"/>'
                     f'<text x="{x(first) + 3:.1f}" y="{y + bar - 7}" font-size="10"'
                     f' fill="#fff">{for_html(fingerprint[:12])}</text></g>')
    dots_y = top + len(certs) * bar + 6
    for r in history:
        colour = COLOURS.get(r.status, COLOURS["unknown"])
        label = for_html(f"{queries.iso(r.time)}: {r.status}")
        parts.append(f'<circle class="probe" cx="{x(r.time):.1f}" cy="{dots_y}" r="3"'
                     f' fill="{colour}"><title>{label}</title></circle>')
    for t, what in events:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top - 8}" y2="{dots_y + 6}"'
                     f' stroke="#1565c0" stroke-dasharray="3,2"><title>{for_html(what)}'
                     "</title></line>")
    parts.append(f'<line x1="{x(now):.1f}" x2="{x(now):.1f}" y1="{top - 8}" y2="{dots_y + 6}"'
                 ' stroke="#c62828"><title>now</title></line>')
    axis_y = height - 6
    parts.append(f'<text x="10" y="{axis_y}" font-size="10">{queries.iso(t0)}</text>'
                 f'<text x="{width - 10}" y="{axis_y}" font-size="10" text-anchor="end">'
                 f"{queries.iso(t1)}</text></svg>")
    return "".join(parts)


def render_detail(conn: Store, row: Target, now: float | None = None,
                  grace: float = 300.0) -> str:
    """The page of target ``row`` (already checked to belong to the viewer's account)."""
    now = time.time() if now is None else now
    esc = for_html
    name = f"{row.domain}:{row.port}/{row.protocol}"
    history = queries.recent_results(conn, row.id, HISTORY)
    # the time of the submission that reported the event, not a proxy for it
    event_time = queries.event_times(conn, [row]).get(row.id)
    out = head(f"certhook: {name}")
    state = row.state if row.state in COLOURS else "unknown"
    until = queries.iso(muted_until(row, now))
    muted = f' <span class="muted-until">muted until {until}</span>' if until else ""
    out += ['<p><a href="/">all targets</a></p>', f"<h1>{esc(name)}</h1>",
            f'<p>state <span class="state {state}">{esc(row.state)}</span>{muted}'
            f" since {esc(queries.iso(row.state_since) or '?')}; lineage"
            f" {esc(row.lineage or 'none reported')}; last probe"
            f" {esc(queries.iso(row.last_probe) or 'never')} from address"
            f" {esc(row.address or '?')}</p>", "<h2>Findings</h2>"]
    reasons = [r for r in (row.reasons or "").split("\n") if r]
    if reasons:
        out.append("<table><thead><tr><th>finding</th><th>what it means</th>"
                   "<th>what to do</th></tr></thead><tbody>")
        for reason in reasons:
            meaning, action = advice(reason)
            out.append(f'<tr class="finding"><td>{esc(reason)}</td><td>{esc(meaning)}</td>'
                       f"<td>{esc(action)}</td></tr>")
        out.append("</tbody></table>")
    else:
        out.append("<p>None: the last probe found nothing wrong.</p>")
    out += _vantages(conn, row)
    deadline = (queries.iso(row.expected_since + grace)
                if row.state == "waiting" and row.expected_since else None)
    out += ["<h2>Certificate served</h2>", "<table><tbody>",
            "<tr><th>fingerprint (SHA-256)</th><td><code>"
            f"{esc(row.served_fingerprint or 'none')}</code></td></tr>",
            f"<tr><th>deployed by certbot</th><td><code>"
            f"{esc(row.expected_fingerprint or 'not reported')}</code>"
            f" (served: {deployed(row)})</td></tr>",
            f"<tr><th>issuer</th><td>{esc(row.issuer or '')}</td></tr>",
            f"<tr><th>not after</th><td>{esc(queries.iso(row.not_after) or '')}"
            f" ({time_left(row.not_after, now)})</td></tr>",
            f"<tr><th>last renewal event</th><td>{esc(row.last_event or 'none')}"
            f" {esc(queries.iso(event_time) or '')}</td></tr>",
            f"<tr><th>deployment deadline</th><td>{esc(deadline or '')}</td></tr>",
            "</tbody></table>", "<h2>Chain served</h2>", *chain_rows(row.chain),
            '<p class="reasons">As the last probe that reached a certificate saw it, leaf'
            f" first; <code>certhook probe {esc(row.domain)}:{int(row.port)}</code> checks"
            " it now.</p>"]
    events = [(row.expected_since, "certbot deployed a renewed certificate")] if (
        row.expected_since) else []
    out += ["<h2>Timeline</h2>", timeline(history, events, now),
            f"<h2>Probe history</h2><p>The last {len(history)} probes, newest first.</p>",
            "<table><thead><tr><th>time</th><th>status</th><th>days left</th>"
            "<th>certificate</th><th>issuer</th><th>address</th><th>findings</th>"
            f"{'<th>vantage</th>' if row.vantages else ''}</tr></thead><tbody>"]
    for r in reversed(history):
        where = f"<td>{esc(r.vantage or '')}</td>" if row.vantages else ""
        found = "".join(f"<div>{esc(x)}</div>" for x in (r.reasons or "").split("\n") if x)
        status = r.status if r.status in COLOURS else "unknown"
        out.append(f'<tr class="probe"><td>{esc(queries.iso(r.time))}</td>'
                   f'<td class="{status}">{esc(r.status)}</td>'
                   f"<td>{'' if r.days_left is None else int(r.days_left)}</td>"
                   f"<td><code>{esc((r.fingerprint or '')[:12])}</code></td>"
                   f"<td>{esc(r.issuer or '')}</td><td>{esc(r.address or '')}</td>"
                   f'<td class="reasons">{found}</td>{where}</tr>')
    out.append("</tbody></table></body></html>")
    return "\n".join(out)


def _vantages(conn: Store, row: Target) -> list[str]:
    """The table of the target's vantages (issue 12), each with its latest verdict."""
    if not row.vantages:
        return []
    esc = for_html
    out = ["<h2>Vantages</h2><p>Probed from each of these places; the state above is the"
           " worst of theirs.</p>", "<table><thead><tr><th>vantage</th><th>state</th>"
           "<th>last result</th><th>next probe</th><th>certificate</th><th>address</th>"
           "<th>findings</th></tr></thead><tbody>"]
    for v in conn.vantages(row.id):
        state = v.state if v.state in COLOURS else "unknown"
        found = "".join(f"<div>{esc(x)}</div>" for x in v.reasons.split("\n") if x)
        out.append(f'<tr class="vantage"><td>{esc(v.vantage)}</td>'
                   f'<td class="{state}">{esc(v.state)}</td>'
                   f"<td>{esc(queries.iso(v.time) or 'never')}</td>"
                   f"<td>{esc(queries.iso(v.next_probe) or '')}</td>"
                   f"<td><code>{esc((v.fingerprint or '')[:12])}</code></td>"
                   f"<td>{esc(v.address or '')}</td><td class=\"reasons\">{found}</td></tr>")
    out.append("</tbody></table>")
    return out
