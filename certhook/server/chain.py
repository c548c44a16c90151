"""The chain a target served at its last probe: kept as a short JSON text, shown as a table.

The server keeps, per target, the chain of the last probe that got one
(leaf first, as sent): each certificate's subject, issuer, notBefore,
notAfter and SHA-256 fingerprint, and nothing else (no DER: a chain is a
few hundred bytes, whatever the certificates hold). Per probe it keeps only
the leaf (``results``), so history does not grow with chain length.

Every string here came from a peer's certificate: :func:`summarize` caps
their length and the page escapes them (:func:`certhook.escape.for_html`).
"""

from __future__ import annotations

import json
from typing import Any

from certhook.escape import for_html

__all__ = ["MAX_CERTS", "rows", "summarize"]

MAX_CERTS = 10  # a chain longer than this is cut (and says so)
_MAX_NAME = 512  # characters of a subject or issuer kept


def _cap(text: str) -> str:
    return text if len(text) <= _MAX_NAME else text[:_MAX_NAME] + "..."


def summarize(result: Any) -> str | None:
    """The chain of probe ``result`` as the JSON text stored, or None when it had none."""
    chain = tuple(getattr(result, "chain", ()) or ())
    if not chain:
        return None
    certs = [{"subject": _cap(c.subject), "issuer": _cap(c.issuer),
              "not_before": c.not_valid_before_utc.timestamp(),
              "not_after": c.not_valid_after_utc.timestamp(),
              "fingerprint": c.fingerprint_sha256} for c in chain[:MAX_CERTS]]
    return json.dumps({"certs": certs, "more": max(0, len(chain) - MAX_CERTS)},
                      separators=(",", ":"))


def _iso(value: object) -> str:
    from certhook.server.queries import iso

    return iso(float(value)) or "" if isinstance(value, (int, float)) else ""


def rows(stored: str | None) -> list[str]:
    """HTML table of a stored chain (leaf first), or a line saying there is none."""
    try:
        data = json.loads(stored) if stored else None
        certs = data["certs"] if isinstance(data, dict) else None
    except (ValueError, KeyError, TypeError):
        certs = None
    if not isinstance(certs, list) or not certs:
        return ["<p>No chain recorded yet (the last probes reached no certificate).</p>"]
    out = ['<table class="chain"><thead><tr><th>#</th><th>subject</th><th>issuer</th>'
           "<th>not before</th><th>not after</th><th>fingerprint</th></tr></thead><tbody>"]
    for i, cert in enumerate(certs):
        if not isinstance(cert, dict):
            continue
        role = "leaf" if i == 0 else f"{i}"
        out.append(f'<tr class="cert"><td>{role}</td><td>{for_html(cert.get("subject", ""))}</td>'
                   f"<td>{for_html(cert.get('issuer', ''))}</td>"
                   f"<td>{_iso(cert.get('not_before'))}</td>"
                   f"<td>{_iso(cert.get('not_after'))}</td>"
                   f"<td><code>{for_html(str(cert.get('fingerprint', ''))[:16])}</code></td></tr>")
    out.append("</tbody></table>")
    more = data.get("more") if isinstance(data, dict) else 0
    if isinstance(more, int) and more > 0:
        out.append(f"<p>and {more} more certificates (a chain is kept to {MAX_CERTS}).</p>")
    return out
