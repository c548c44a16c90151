"""What the CA says about a served certificate: its ARI window and its CRL.

One call after the handshake (:func:`ask_ca`), made only when the options
ask for it (``--ari``, ``--crl``; on the audit server, ``[audit] ari`` and
``crl``), so a plain probe imports and fetches nothing more. Each lookup
share one time budget, the probe's ``timeout``; every fetch goes through
``options.allow_address`` (the server's SSRF guard).

A lookup that cannot be made (CA down, 404, malformed, slow, no verifier)
yields no finding, only a note ("ARI status unknown: ...", "revocation
unknown: ..."), and ``ari_window`` / ``revoked`` stay null: neither a false
ok nor a false alarm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from certhook.probe.ari import Window
    from certhook.probe.crl import RevocationStatus
    from certhook.probe.result import ProbeOptions
    from certhook.x509 import Certificate

__all__ = ["UNKNOWN_PREFIXES", "CaVerdict", "ask_ca", "directory_for"]

#: How the notes of a lookup that could not be made begin (the text output shows them).
UNKNOWN_PREFIXES = ("ARI status unknown: ", "revocation unknown: ")


@dataclass(frozen=True)
class CaVerdict:
    """Findings (``(severity, text)``), notes, and the values for the JSON fields."""

    findings: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()
    ari_window: Window | None = None
    revocation: RevocationStatus | None = None


NOTHING = CaVerdict()


def directory_for(leaf: Certificate, options: ProbeOptions) -> str | None:
    """The ACME directory to ask: the one given, else the first issuer mapping that matches."""
    if options.ari_directory:
        return options.ari_directory
    issuer = leaf.issuer.lower()
    for substring, url in options.ari_issuers:
        if substring.lower() in issuer:
            return url
    return None


def ask_ca(leaf: Certificate, chain: Sequence[Certificate], options: ProbeOptions,
           now: datetime) -> CaVerdict:
    """ARI and CRL for ``leaf``; ``chain`` must hold its issuer for the CRL check."""
    directory = directory_for(leaf, options)
    if directory is None and not options.check_crl:
        return NOTHING
    # One budget for both lookups: a CA that stalls holds the probe's thread for
    # at most one more ``timeout``, whatever it does.
    deadline = time.monotonic() + options.timeout
    findings: list[tuple[str, str]] = []
    notes: list[str] = []
    window = None
    revocation = None
    if directory is not None:
        from certhook.probe import ari

        status = ari.lookup(leaf, directory, now=now, timeout=options.timeout,
                            allow_address=options.allow_address)
        window = status.window
        if window is not None:
            findings += ari.window_findings(window, now)
        else:
            notes.append(f"{UNKNOWN_PREFIXES[0]}{status.error}")
    if options.check_crl:
        from certhook.probe import crl

        left = deadline - time.monotonic()
        if left > 0:
            revocation = crl.check(leaf, chain, now=now, timeout=left,
                                   allow_address=options.allow_address)
        else:
            revocation = crl.RevocationStatus(None, error="no time left after the ARI lookup")
        more, more_notes = crl.findings(revocation)
        findings += more
        notes += more_notes
    return CaVerdict(tuple(findings), tuple(notes), window, revocation)
