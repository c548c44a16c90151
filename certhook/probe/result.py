"""The options of a probe and its result, with the JSON contract of ``--format json``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable

from certhook.probe.lifetime import DEFAULT_CRIT, DEFAULT_WARN, Threshold, Validity

if TYPE_CHECKING:
    from collections.abc import Iterable

    from certhook.probe.ari import Window
    from certhook.probe.targets import Fingerprints, Target
    from certhook.x509 import Certificate

__all__ = [
    "SEVERITY", "STATUSES", "AddressResult", "ProbeOptions", "ProbeResult", "exit_code", "rank",
    "worst_status",
]

#: Status -> exit code, as the monitoring-plugins guidelines define them.
STATUSES: Mapping[str, int] = {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}

#: Status -> severity, for the verdict on several targets: CRITICAL > WARNING >
#: UNKNOWN > OK, not the order of the exit codes. That is monitoring-plugins'
#: ``max_state_alt()`` (lib/utils_base.c), the order aggregating plugins use:
#: a finding about a certificate that was read (expired, wrong name, expiring)
#: is what a user acts on, and must not be hidden behind "one other target
#: could not be checked"; an unknown still outranks ok, so that a target the
#: probe cannot reach never passes as fine. docs/probe.md states the order.
SEVERITY: Mapping[str, int] = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}


@dataclass(frozen=True)
class ProbeOptions:
    """How to probe and judge.

    ``local_fingerprints`` maps a name to the SHA-256 fingerprint (or a
    frozenset of them) of the certificate certbot holds for it; None turns
    the local-match check off. ``allow_address`` is called with each
    resolved IP address before connecting to it (and to a CA's ARI or CRL
    URL); False skips the address. ``ari_directory`` (or the first of
    ``ari_issuers``, ``(issuer substring, directory URL)`` pairs, matching the
    leaf's issuer) turns the ARI lookup on; ``check_crl`` the CRL check.

    ``warn`` and ``crit`` are :class:`~certhook.probe.lifetime.Threshold`
    (default 7/30 and 7/90 of the certificate's lifetime); ``warn_days`` and
    ``crit_days``, the older spelling, set them to a bare number of days.
    ``renew_before`` is the lineage's ``renew_before_expiry`` in seconds
    (None: certbot's default rule). ``clock`` gives the time the verdict is
    made at (default: now).
    """

    timeout: float = 10.0
    warn_days: int | None = None
    crit_days: int | None = None
    name_check: str = "cn_san"
    ca_file: str | None = None
    local_fingerprints: Mapping[str, Fingerprints] | None = None
    allow_address: Callable[[str], bool] | None = None
    warn: Threshold = DEFAULT_WARN
    crit: Threshold = DEFAULT_CRIT
    renew_before: float | None = None
    clock: Callable[[], datetime] | None = None
    ari_directory: str | None = None
    ari_issuers: tuple[tuple[str, str], ...] = ()
    check_crl: bool = False
    #: Every address of a name (True), or the first that answers (False).
    all_addresses: bool = True
    #: ``(host, port)`` -> addresses to connect to instead of resolving the
    #: host (``--resolve``, as curl's); port 0 stands for every port.
    resolve: Mapping[tuple[str, int], tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        from certhook.probe.checks import NAME_CHECKS

        if not self.timeout > 0:
            raise ValueError(f"timeout must be positive, not {self.timeout}")
        # The older spelling: a bare number of days, compared in whole days.
        if self.warn_days is not None:
            object.__setattr__(self, "warn", Threshold.days(self.warn_days))
        if self.crit_days is not None:
            object.__setattr__(self, "crit", Threshold.days(self.crit_days))
        if self.renew_before is not None and not self.renew_before >= 0:
            raise ValueError(f"renew_before must not be negative, not {self.renew_before}")
        if self.name_check not in NAME_CHECKS:
            raise ValueError(f"name_check must be one of {', '.join(NAME_CHECKS)}")


@dataclass(frozen=True)
class AddressResult:
    """What one address behind a target served: a row of ``addresses`` in JSON."""

    address: str
    status: str
    fingerprint: str | None
    reasons: tuple[str, ...]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "status": self.status,
                "fingerprint": self.fingerprint, "reasons": list(self.reasons),
                "error": self.error}


def _iso(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment is not None else None


@dataclass(frozen=True)
class ProbeResult:
    """What a probe of one target found.

    ``status`` is ``ok``, ``warning``, ``critical`` or ``unknown`` (could
    not connect or talk; ``error`` says why). ``reasons`` lists every
    finding that made it worse than ``ok``; ``notes`` what limits the probe
    (the Python 3.9 chain fallback). ``chain`` is what the server sent,
    leaf first; ``earliest_chain_expiry`` its earliest ``notAfter``, and
    ``verified_chain_expiry`` the earliest ``notAfter`` of the chain that
    verified to a trust anchor (Python 3.10+). ``validity`` is the verdict
    on the leaf's lifetime (:func:`certhook.probe.lifetime.judge`): time
    left in seconds, lifetime, renewal point.
    ``addresses`` holds each address's own verdict; ``status`` is the worst
    of them, and the other fields describe the address that gave it
    (``address``).
    """

    target: Target
    status: str
    reasons: tuple[str, ...]
    error: str | None
    leaf: Certificate | None
    chain: tuple[Certificate, ...]
    days_left: int | None
    not_after: datetime | None
    earliest_chain_expiry: datetime | None
    name_ok: bool | None
    trusted: bool | None
    trust_error: str | None
    self_signed: bool | None
    tls_version: str | None
    cipher: str | None
    local_match: bool | None
    address: str | None
    elapsed: float
    verified_chain_expiry: datetime | None = None
    name_check: str = "cn_san"
    notes: tuple[str, ...] = ()
    validity: Validity | None = None
    #: The CA's suggested renewal window (ARI), when one was fetched.
    ari_window: Window | None = None
    #: True/False once a verified CRL was consulted; None when not checked or unknown.
    revoked: bool | None = None
    #: What verified the CRL's signature ("cryptography"), when one was used.
    revocation_checked_by: str | None = None
    #: One row per address probed, in resolver order (one for a single address).
    addresses: tuple[AddressResult, ...] = ()

    @property
    def exit_code(self) -> int:
        return STATUSES[self.status]

    @property
    def seconds_left(self) -> int | None:
        """Seconds until the leaf's notAfter (negative once expired)."""
        return self.validity.seconds_left if self.validity else None

    @property
    def lifetime_seconds(self) -> int | None:
        """The leaf's lifetime, notAfter - notBefore, in seconds."""
        return self.validity.lifetime_seconds if self.validity else None

    @property
    def renewal_due(self) -> datetime | None:
        """When the ACME client should have renewed the leaf."""
        return self.validity.renewal_due if self.validity else None

    @property
    def renewal_overdue(self) -> bool | None:
        return self.validity.renewal_overdue if self.validity else None

    def to_json(self) -> dict[str, Any]:
        """The object of ``--format json``: the documented contract (docs/probe.md)."""
        leaf = self.leaf
        target = self.target
        return {
            "target": target.label,
            "host": target.host,
            "port": target.port,
            "protocol": target.protocol,
            "servername": target.sni,
            "expect_name": target.name_to_check,
            "address": self.address,
            "status": self.status,
            "reasons": list(self.reasons),
            "error": self.error,
            "days_left": self.days_left,
            "seconds_left": self.seconds_left,
            "lifetime_seconds": self.lifetime_seconds,
            "renewal_due": _iso(self.renewal_due),
            "renewal_overdue": self.renewal_overdue,
            "not_before": _iso(leaf.not_valid_before_utc) if leaf else None,
            "not_after": _iso(self.not_after),
            "earliest_chain_expiry": _iso(self.earliest_chain_expiry),
            "verified_chain_expiry": _iso(self.verified_chain_expiry),
            "fingerprint_sha256": leaf.fingerprint_sha256 if leaf else None,
            "serial": leaf.serial_hex if leaf else None,
            "subject": leaf.subject if leaf else None,
            "subject_cn": leaf.subject_cn if leaf else None,
            "issuer": leaf.issuer if leaf else None,
            "sans": [*leaf.san_dns, *leaf.san_ip] if leaf else [],
            "name_check": self.name_ok,
            "name_check_mode": self.name_check,
            "trusted": self.trusted,
            "trust_error": self.trust_error,
            "self_signed": self.self_signed,
            "key_type": leaf.public_key_type if leaf else None,
            "key_bits": leaf.public_key_bits if leaf else None,
            "curve": leaf.curve if leaf else None,
            "signature_algorithm": leaf.signature_algorithm if leaf else None,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "chain": [
                {
                    "subject": cert.subject,
                    "issuer": cert.issuer,
                    "not_after": _iso(cert.not_valid_after_utc),
                    "fingerprint_sha256": cert.fingerprint_sha256,
                }
                for cert in self.chain
            ],
            "local_match": self.local_match,
            "notes": list(self.notes),
            "ari_window": None if self.ari_window is None else {
                "start": _iso(self.ari_window.start), "end": _iso(self.ari_window.end),
                "explanation_url": self.ari_window.explanation_url,
            },
            "revoked": self.revoked,
            "revocation_checked_by": self.revocation_checked_by,
            "addresses": [row.to_json() for row in self.addresses],
            "elapsed": round(self.elapsed, 3),
        }


def worst_status(results: Iterable[ProbeResult]) -> str:
    """The worst status of ``results`` by :data:`SEVERITY`; ok if none."""
    return max((result.status for result in results), key=SEVERITY.__getitem__, default="ok")


def rank(results: Iterable[ProbeResult]) -> list[ProbeResult]:
    """``results`` worst first by :data:`SEVERITY`, in input order within a status."""
    return sorted(results, key=lambda result: -SEVERITY[result.status])


def exit_code(results: Iterable[ProbeResult]) -> int:
    """The exit code of a run: that of the worst status (:func:`worst_status`)."""
    return STATUSES[worst_status(results)]
