"""Revocation from CRLs (RFC 5280 section 5): is the served certificate on its CA's list?

Let's Encrypt turned OCSP off in 2025; a CRL is now the one place a
revocation is published. The leaf names its CRL in cRLDistributionPoints;
certhook fetches the first http(s) one (``fetch.get``: a size cap, default
10 MB, a time cap, the SSRF guard), reads it with its own DER reader
(:func:`parse_crl`), verifies its signature with the issuer's public key,
and looks the serial up. A verified CRL is kept in memory, per process,
until its ``nextUpdate`` (at most a day), so one fetch serves every
certificate it covers.

The signature is verified with ``cryptography`` when it is importable. The
standard library has no way to verify a detached signature: ``ssl`` applies
a CRL only inside a handshake (``VERIFY_CRL_CHECK_LEAF`` with the CRL loaded
into the context's store), which needs a second handshake with the peer and
is not offered. Without ``cryptography`` the status is "revocation unknown:
no verifier (install cryptography)"; an unverified CRL is never trusted,
and a CRL whose signature does not verify never marks anything revoked.

No cRLDistributionPoints is normal (short-lived certificates carry neither
CRL nor OCSP): not a finding. Every other fault, an expired CRL, another
issuer's or a wrong key's, an oversized or non-DER body, an unreachable CA,
is "revocation unknown (why)": a note, never a false alarm or a false ok.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Callable

from certhook import _der
from certhook.errors import ParseError, RemoteError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from certhook.x509 import Certificate

__all__ = [
    "MAX_CRL_BYTES", "CrlCache", "ParsedCrl", "Revocation", "RevocationStatus", "check",
    "parse_crl", "verifier",
]

MAX_CRL_BYTES = 10 * 1024 * 1024
_MAX_KEEP = 86400.0  # seconds a CRL is kept at most, whatever its nextUpdate says
_ERROR_KEEP = 600.0  # a failed fetch is not repeated for ten minutes
_SKEW = timedelta(minutes=5)  # thisUpdate this far ahead of our clock is accepted
_MAX_SERIAL_OCTETS = 64

# CRLReason (RFC 5280 5.3.1); 7 is unused.
REASONS = {
    0: "unspecified", 1: "keyCompromise", 2: "cACompromise", 3: "affiliationChanged",
    4: "superseded", 5: "cessationOfOperation", 6: "certificateHold", 8: "removeFromCRL",
    9: "privilegeWithdrawn", 10: "aACompromise",
}
_REASON_CODE = _der.encode_oid("2.5.29.21")
_AKI = _der.encode_oid("2.5.29.35")
_CRL_NUMBER = _der.encode_oid("2.5.29.20")
_DELTA = _der.encode_oid("2.5.29.27")
_IDP = _der.encode_oid("2.5.29.28")
_INVALIDITY_DATE = _der.encode_oid("2.5.29.24")
# IssuingDistributionPoint fields (RFC 5280 5.2.5) that make a CRL cover
# less than every end-entity certificate of its issuer; onlyContainsUserCerts
# [1] and distributionPoint [0] do not.
_IDP_PARTIAL = {0x82: "only CA certificates", 0x83: "only some reasons",
                0x84: "an indirect CRL", 0x85: "only attribute certificates"}


@dataclass(frozen=True)
class Revocation:
    """One entry of a CRL."""

    revoked_at: datetime
    reason: str | None


@dataclass(frozen=True)
class ParsedCrl:
    """A CertificateList (RFC 5280 5.1), with what is needed to verify it."""

    issuer_der: bytes = field(repr=False)
    this_update: datetime
    next_update: datetime | None
    authority_key_identifier: bytes | None
    revoked: dict[int, Revocation] = field(repr=False)
    der: bytes = field(repr=False)


@dataclass(frozen=True)
class RevocationStatus:
    """``revoked`` True/False once a verified CRL was consulted; None when not
    (``error`` says why, None when there was nothing to check)."""

    revoked: bool | None
    revocation: Revocation | None = None
    checked_by: str | None = None
    error: str | None = None
    url: str | None = None


def _extensions(der: bytes, start: int, end: int, what: str) -> dict[bytes, tuple[bool, int, int]]:
    # Extensions ::= SEQUENCE OF Extension (as in certificates, RFC 5280 4.1)
    _, pos, seq_end = _der.expect(der, start, end, _der.SEQUENCE, what)
    if seq_end != end:
        raise ParseError(f"{what}: trailing data")
    found: dict[bytes, tuple[bool, int, int]] = {}
    for tag, ext_start, ext_end in _der.iter_tlvs(der, pos, end):
        if tag != _der.SEQUENCE:
            raise ParseError(f"{what}: an extension is not a SEQUENCE")
        _, oid_start, oid_end = _der.expect(der, ext_start, ext_end, _der.OID, "extnID")
        tag, value_start, value_end = _der.read_tlv(der, oid_end, ext_end)
        critical = False
        if tag == _der.BOOLEAN:
            if value_end - value_start != 1:
                raise ParseError(f"{what}: malformed critical flag")
            critical = der[value_start] != 0
            tag, value_start, value_end = _der.read_tlv(der, value_end, ext_end)
        if tag != _der.OCTET_STRING or value_end != ext_end:
            raise ParseError(f"{what}: malformed extnValue")
        oid = der[oid_start:oid_end]
        if oid in found:
            raise ParseError(f"{what}: duplicate extension {_der.decode_oid(oid)}")
        found[oid] = (critical, value_start, value_end)
    return found


def _unknown_critical(found: dict[bytes, tuple[bool, int, int]], known: set[bytes],
                      what: str) -> None:
    # RFC 5280 5.2 / 5.3: a CRL with a critical extension the reader does not
    # process must not be used to decide revocation.
    for oid, (critical, _, _) in found.items():
        if critical and oid not in known:
            raise ParseError(f"{what}: unsupported critical extension {_der.decode_oid(oid)}")


def _entry(der: bytes, start: int, end: int) -> tuple[int, Revocation]:
    # SEQUENCE { userCertificate INTEGER, revocationDate Time, crlEntryExtensions OPTIONAL }
    _, serial_start, serial_end = _der.expect(der, start, end, _der.INTEGER, "userCertificate")
    if serial_end - serial_start > _MAX_SERIAL_OCTETS:
        raise ParseError(f"revoked serial of {serial_end - serial_start} octets")
    serial = _der.read_int(der, serial_start, serial_end)
    date = _der.read_tlv(der, serial_end, end)
    revoked_at = _der.read_time(der, date)
    reason = None
    if date[2] != end:
        _, _ext_start, ext_end = _der.expect(der, date[2], end, _der.SEQUENCE, "crlEntryExtensions")
        if ext_end != end:
            raise ParseError("trailing data in a CRL entry")
        found = _extensions(der, date[2], end, "crlEntryExtensions")
        _unknown_critical(found, {_REASON_CODE, _INVALIDITY_DATE}, "CRL entry")
        if _REASON_CODE in found:
            _, value_start, value_end = found[_REASON_CODE]
            _, code_start, code_end = _der.expect(der, value_start, value_end, _der.ENUMERATED,
                                                  "reasonCode")
            if code_end != value_end or code_end - code_start != 1:
                raise ParseError("malformed reasonCode")
            reason = REASONS.get(der[code_start], f"reason {der[code_start]}")
    return serial, Revocation(revoked_at, reason)


def parse_crl(data: bytes, source: str = "CRL") -> ParsedCrl:
    """Parse a DER CertificateList; ParseError for anything else (PEM, HTML, truncated).

    Refused as unusable, not only as malformed: a delta CRL, a CRL that
    covers only part of its issuer's certificates (issuingDistributionPoint),
    and an unknown critical extension (RFC 5280 5.2).
    """
    der = bytes(data)
    try:
        return _parse(der)
    except ParseError as exc:
        raise ParseError(exc.reason, source) from None


def _parse(der: bytes) -> ParsedCrl:
    # CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }
    _, start, end = _der.expect(der, 0, len(der), _der.SEQUENCE, "CertificateList")
    if end != len(der):
        raise ParseError(f"{len(der) - end} bytes of trailing data after the CRL")
    _, tbs, tbs_end = _der.expect(der, start, end, _der.SEQUENCE, "tbsCertList")
    sig_alg = _der.expect(der, tbs_end, end, _der.SEQUENCE, "signatureAlgorithm")
    if _der.expect(der, sig_alg[2], end, _der.BIT_STRING, "signatureValue")[2] != end:
        raise ParseError("trailing data in CertificateList")
    # TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature, issuer,
    #   thisUpdate, nextUpdate OPTIONAL, revokedCertificates OPTIONAL,
    #   crlExtensions [0] EXPLICIT OPTIONAL }
    item = _der.read_tlv(der, tbs, tbs_end)
    if item[0] == _der.INTEGER:
        if item[2] - item[1] != 1 or der[item[1]] != 1:
            raise ParseError("unknown CRL version")
        item = _der.read_tlv(der, item[2], tbs_end)
    if item[0] != _der.SEQUENCE:
        raise ParseError("signature: expected an AlgorithmIdentifier")
    issuer = _der.expect(der, item[2], tbs_end, _der.SEQUENCE, "issuer")
    this_tlv = _der.read_tlv(der, issuer[2], tbs_end)
    this_update = _der.read_time(der, this_tlv)
    pos = this_tlv[2]
    next_update = None
    revoked: dict[int, Revocation] = {}
    extensions: dict[bytes, tuple[bool, int, int]] = {}
    if pos < tbs_end and der[pos] in (_der.UTC_TIME, _der.GENERALIZED_TIME):
        next_tlv = _der.read_tlv(der, pos, tbs_end)
        next_update = _der.read_time(der, next_tlv)
        pos = next_tlv[2]
    if pos < tbs_end and der[pos] == _der.SEQUENCE:
        _, list_start, list_end = _der.read_tlv(der, pos, tbs_end)
        for tag, entry_start, entry_end in _der.iter_tlvs(der, list_start, list_end):
            if tag != _der.SEQUENCE:
                raise ParseError("a revoked entry is not a SEQUENCE")
            serial, entry = _entry(der, entry_start, entry_end)
            revoked.setdefault(serial, entry)
        pos = list_end
    if pos < tbs_end:
        tag, ext_start, ext_end = _der.read_tlv(der, pos, tbs_end)
        if tag != 0xA0 or ext_end != tbs_end:
            raise ParseError("unexpected data at the end of tbsCertList")
        extensions = _extensions(der, ext_start, ext_end, "crlExtensions")
    # The issuer Name whole (tag and length too): it starts where signature ends.
    issuer_der = der[item[2]:issuer[2]]
    return _checked(der, extensions, issuer_der, this_update, next_update, revoked)


def _checked(der: bytes, extensions: dict[bytes, tuple[bool, int, int]], issuer_der: bytes,
             this_update: datetime, next_update: datetime | None,
             revoked: dict[int, Revocation]) -> ParsedCrl:
    _unknown_critical(extensions, {_IDP, _DELTA, _AKI, _CRL_NUMBER}, "CRL")
    if _DELTA in extensions:
        raise ParseError("a delta CRL, which certhook does not combine with its base")
    if _IDP in extensions:
        _, value_start, value_end = extensions[_IDP]
        _, idp_start, idp_end = _der.expect(der, value_start, value_end, _der.SEQUENCE,
                                            "issuingDistributionPoint")
        for tag, _, _ in _der.iter_tlvs(der, idp_start, idp_end):
            if tag in _IDP_PARTIAL:
                raise ParseError(f"the CRL covers {_IDP_PARTIAL[tag]}")
    aki = None
    if _AKI in extensions:
        _, value_start, value_end = extensions[_AKI]
        _, aki_start, aki_end = _der.expect(der, value_start, value_end, _der.SEQUENCE,
                                            "authorityKeyIdentifier")
        for tag, id_start, id_end in _der.iter_tlvs(der, aki_start, aki_end):
            if tag == 0x80:
                aki = der[id_start:id_end]
    if next_update is not None and next_update < this_update:
        raise ParseError("nextUpdate is before thisUpdate")
    return ParsedCrl(issuer_der, this_update, next_update, aki, revoked, der)


def verifier() -> str | None:
    """The name of what can verify a CRL's signature here, or None."""
    try:
        import cryptography.x509  # noqa: F401
    except ImportError:
        return None
    return "cryptography"


def _verify(crl: ParsedCrl, issuer: Certificate) -> None:
    """ParseError unless ``issuer``'s key signed ``crl`` (cryptography)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    try:
        loaded = x509.load_der_x509_crl(crl.der)
        public_key = x509.load_der_x509_certificate(issuer.der).public_key()
        valid = loaded.is_signature_valid(public_key)  # type: ignore[arg-type]
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ParseError(f"cannot verify the CRL signature: {exc}") from None
    if not valid:
        raise ParseError("the CRL signature does not verify with the issuer's key")


def _issuer_of(leaf: Certificate, chain: Sequence[Certificate]) -> Certificate | None:
    for cert in chain:
        if cert.subject_der == leaf.issuer_der and cert is not leaf:
            return cert
    return None


@dataclass
class _Entry:
    until: float
    crl: ParsedCrl | None
    error: str | None
    verified: set[str] = field(default_factory=set)  # issuer fingerprints that verified it


class CrlCache:
    """Fetched CRLs per URL, in memory, until ``nextUpdate`` (at most a day)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._fetching: dict[str, threading.Lock] = {}

    def get(self, url: str) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(url)
            return entry if entry is not None and entry.until > self.clock() else None

    def put(self, url: str, entry: _Entry) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                now = self.clock()
                self._entries = {k: v for k, v in self._entries.items() if v.until > now}
            self._entries[url] = entry

    def fetch_lock(self, url: str) -> threading.Lock:
        """One fetch per URL at a time: 200 targets behind one CA share one download."""
        with self._lock:
            return self._fetching.setdefault(url, threading.Lock())


CACHE = CrlCache()


def _load(url: str, now: datetime, timeout: float, max_bytes: int,
          allow_address: Callable[[str], bool] | None, cache: CrlCache) -> _Entry:
    from certhook.probe.fetch import get

    with cache.fetch_lock(url):
        entry = cache.get(url)
        if entry is not None:
            return entry
        clock = cache.clock()
        try:
            reply = get(url, timeout=timeout, max_bytes=max_bytes,
                        accept="application/pkix-crl", allow_address=allow_address)
            if reply.status != 200:
                raise RemoteError(f"HTTP {reply.status}")
            crl = parse_crl(reply.body, "CRL")
        except (RemoteError, ParseError) as exc:
            entry = _Entry(clock + _ERROR_KEEP, None, str(exc))
        else:
            keep = _MAX_KEEP
            if crl.next_update is not None:
                keep = min(max((crl.next_update - now).total_seconds(), 0.0), _MAX_KEEP)
            entry = _Entry(clock + max(keep, 1.0), crl, None)
        cache.put(url, entry)
        return entry


def check(
    leaf: Certificate,
    chain: Sequence[Certificate],
    *,
    now: datetime,
    timeout: float,
    max_bytes: int = MAX_CRL_BYTES,
    allow_address: Callable[[str], bool] | None = None,
    cache: CrlCache = CACHE,
) -> RevocationStatus:
    """Whether ``leaf`` is revoked per its CRL; ``chain`` holds its issuer.

    Never raises for a fault of the CA or its CRL.
    """
    urls = leaf.crl_urls
    if not urls:
        return RevocationStatus(None)  # nothing to check: not a finding
    url = urls[0]
    by = verifier()
    if by is None:
        return RevocationStatus(None, error="no verifier (install cryptography)", url=url)
    issuer = _issuer_of(leaf, chain)
    if issuer is None:
        return RevocationStatus(None, error="the issuer certificate was not served", url=url)
    entry = _load(url, now, timeout, max_bytes, allow_address, cache)
    if entry.crl is None:
        return RevocationStatus(None, error=f"{url}: {entry.error}", url=url)
    crl = entry.crl
    try:
        if crl.issuer_der != leaf.issuer_der:
            raise ParseError("the CRL is another issuer's")
        if crl.authority_key_identifier is not None and issuer.subject_key_identifier \
                is not None and crl.authority_key_identifier != issuer.subject_key_identifier:
            raise ParseError("the CRL was signed by another key of the issuer")
        if issuer.fingerprint_sha256 not in entry.verified:
            _verify(crl, issuer)
            entry.verified.add(issuer.fingerprint_sha256)
        if crl.next_update is not None and crl.next_update < now:
            raise ParseError(f"the CRL expired at {crl.next_update:%Y-%m-%d %H:%M} UTC")
        if crl.this_update > now + _SKEW:
            raise ParseError(f"the CRL is not valid before {crl.this_update:%Y-%m-%d %H:%M} UTC")
    except ParseError as exc:
        return RevocationStatus(None, checked_by=by, error=f"{url}: {exc.reason}", url=url)
    found = crl.revoked.get(leaf.serial_number)
    return RevocationStatus(found is not None, found, by, None, url)


def findings(status: RevocationStatus) -> tuple[list[tuple[str, str]], list[str]]:
    """``(severity, text)`` findings and notes for a status."""
    if status.revoked and status.revocation is not None:
        when = status.revocation.revoked_at.strftime("%Y-%m-%d %H:%M UTC")
        reason = status.revocation.reason or "no reason given"
        return [("critical", f"revoked at {when} ({reason})")], []
    if status.error is not None:
        from certhook.probe.authority import UNKNOWN_PREFIXES

        return [], [f"{UNKNOWN_PREFIXES[1]}{status.error}"]
    return [], []
