"""Read X.509 certificates (DER or PEM) with the standard library only.

The reader decodes what certhook monitors (names, validity, SANs, key type
and size, the identifiers of chain building) and reports it in
pyca/cryptography's vocabulary, so ``Certificate.issuer`` equals
cryptography's ``cert.issuer.rfc4514_string()`` and so on. Nothing is
verified: no signature is checked, since the standard library cannot check
RSA or ECDSA signatures.

Any input gives certificates or :class:`~certhook.errors.ParseError`, naming
the source. The reader is more lenient than cryptography on values that do
not affect monitoring (PrintableString characters, T61String bytes, X.509
version 2, unknown curves) and as strict on structure (RFC 5280 section 4.1).
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

from certhook import _der
from certhook import _x509_names as _names
from certhook._x509_curves import explicit_curve
from certhook._x509_extensions import Extensions, parse_extensions
from certhook.errors import LocalError, ParseError

__all__ = ["Certificate", "load_der", "load_pem", "load_pem_file"]


@dataclass(frozen=True)
class Certificate:
    """One parsed certificate. Fields mirror cryptography's names.

    ``issuer`` and ``subject`` are ``Name.rfc4514_string()``; ``subject_cn``
    and ``issuer_cn`` the first commonName in DER order. ``public_key_bits``
    is cryptography's ``key_size`` where it has one (RSA modulus bits, DSA
    prime bits, the EC curve's size); Ed25519 and Ed448 keys have none
    there, so they report 256 and 456, the sizes of those public keys in
    bits. A key of unknown type, or on an unknown named curve, reports 0. An
    EC key with explicit parameters (``specifiedCurve``, which RFC 5480
    forbids and cryptography cannot name) reports the named curve they
    spell out, or the field size, with ``curve`` ending in
    " (explicit parameters)".
    ``signature_algorithm`` is cryptography's ``signature_algorithm_oid._name``,
    except that an OID it has no name for gives the dotted OID rather than
    "Unknown OID". ``subject_der`` and ``issuer_der`` are the Names' DER, for
    chain building: a child's ``issuer_der`` equals its parent's
    ``subject_der``.
    """

    der: bytes = field(repr=False)
    version: int
    serial_number: int
    issuer: str
    subject: str
    subject_cn: str | None
    issuer_cn: str | None
    not_valid_before_utc: datetime
    not_valid_after_utc: datetime
    san_dns: tuple[str, ...]
    san_ip: tuple[str, ...]
    public_key_type: str
    public_key_bits: int
    curve: str | None
    signature_algorithm_oid: str
    signature_algorithm: str
    fingerprint_sha256: str
    is_ca: bool | None
    subject_key_identifier: bytes | None
    authority_key_identifier: bytes | None
    subject_der: bytes = field(repr=False)
    issuer_der: bytes = field(repr=False)
    #: The http(s) URIs of the CRL distribution points (RFC 5280 4.2.1.13).
    crl_urls: tuple[str, ...] = ()

    @property
    def serial_hex(self) -> str:
        """The serial as ``certbot certificates`` prints it: lowercase hex."""
        return format(self.serial_number, "x")

    @property
    def self_signed(self) -> bool:
        """Whether subject and issuer are the same (and so are SKI and AKI).

        Only the names are compared; the signature is *not* verified, so a
        forged certificate naming itself as its issuer counts as self-signed.
        """
        if self.subject_der != self.issuer_der:
            return False
        ski, aki = self.subject_key_identifier, self.authority_key_identifier
        return ski is None or aki is None or ski == aki

    @property
    def identifiers(self) -> tuple[str, ...]:
        """The names ``certbot certificates`` lists as "Identifiers".

        As certbot 5 (``san.from_x509``): the first subject commonName, then
        the dNSName SANs that differ from it, all lowercased with a trailing
        dot removed, then the iPAddress SANs. Where certbot fails on a
        commonName that is an IP address, it is listed with the addresses
        (first, unless a SAN already holds it).
        """
        cn = self.subject_cn
        names: list[str] = []
        addresses = list(self.san_ip)
        if cn is not None:
            try:
                address = str(ipaddress.ip_address(cn))
            except ValueError:
                names.append(cn)
            else:
                if address not in addresses:
                    addresses.insert(0, address)
        names.extend(name for name in self.san_dns if name != cn)
        return tuple(_normalise_dns(name) for name in names) + tuple(addresses)

    def days_left(self, now: datetime | None = None) -> int:
        """Whole days until ``not_valid_after_utc``, rounded down.

        The figure of certbot's "VALID: N days"; negative once expired.
        ``now`` must be timezone-aware (default: the current time).
        """
        if now is None:
            now = datetime.now(timezone.utc)
        elif now.utcoffset() is None:
            raise ValueError("days_left: now must be a timezone-aware datetime")
        return (self.not_valid_after_utc - now).days


def _normalise_dns(name: str) -> str:
    # certbot.util.enforce_domain_sanity: lowercase, drop one trailing dot.
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def load_der(data: bytes, source: str = "<der>") -> Certificate:
    """Parse one DER-encoded certificate; nothing may follow it."""
    der = bytes(data)
    try:
        return _parse(der)
    except ParseError as exc:
        raise ParseError(exc.reason, source) from None


# RFC 5280 4.1.2.2 allows 20 octets and asks readers to cope with more;
# cryptography takes any size. Past this one, repr() of the int would fail
# (Python 3.11+ refuses to print ints of more than 4300 digits).
_MAX_SERIAL_OCTETS = 1024


def _parse(der: bytes) -> Certificate:
    # Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm,
    #                            signatureValue BIT STRING }  (RFC 5280 4.1)
    _, start, end = _der.expect(der, 0, len(der), _der.SEQUENCE, "Certificate")
    if end != len(der):
        raise ParseError(f"{len(der) - end} bytes of trailing data after the certificate")
    _, tbs, tbs_end = _der.expect(der, start, end, _der.SEQUENCE, "tbsCertificate")
    sig_alg = _der.expect(der, tbs_end, end, _der.SEQUENCE, "signatureAlgorithm")
    signature = _der.expect(der, sig_alg[2], end, _der.BIT_STRING, "signatureValue")
    if signature[2] != end:
        raise ParseError("trailing data in Certificate")
    _, oid_start, oid_end = _der.expect(der, sig_alg[1], sig_alg[2], _der.OID, "signature")
    sig_oid = _der.decode_oid(der[oid_start:oid_end])

    # TBSCertificate ::= SEQUENCE { version [0] EXPLICIT DEFAULT v1,
    #   serialNumber, signature, issuer, validity, subject,
    #   subjectPublicKeyInfo, issuerUniqueID [1], subjectUniqueID [2],
    #   extensions [3] EXPLICIT }
    tag, pos, item_end = _der.read_tlv(der, tbs, tbs_end)
    version = 1
    if tag == 0xA0:
        _, vstart, vend = _der.expect(der, pos, item_end, _der.INTEGER, "version")
        if vend != item_end:
            raise ParseError("trailing data in version")
        if vend - vstart != 1 or der[vstart] > 2:
            raise ParseError(f"unknown X.509 version 0x{der[vstart:vend][:8].hex()}")
        version = der[vstart] + 1
        tag, pos, item_end = _der.read_tlv(der, item_end, tbs_end)
    if tag != _der.INTEGER:
        raise ParseError(f"serialNumber: expected tag 0x02, found 0x{tag:02x}")
    if item_end - pos > _MAX_SERIAL_OCTETS:
        raise ParseError(f"serialNumber of {item_end - pos} octets")
    serial = _der.read_int(der, pos, item_end)
    inner_alg = _der.expect(der, item_end, tbs_end, _der.SEQUENCE, "signature")
    issuer = _der.expect(der, inner_alg[2], tbs_end, _der.SEQUENCE, "issuer")
    validity = _der.expect(der, issuer[2], tbs_end, _der.SEQUENCE, "validity")
    subject = _der.expect(der, validity[2], tbs_end, _der.SEQUENCE, "subject")
    spki = _der.expect(der, subject[2], tbs_end, _der.SEQUENCE, "subjectPublicKeyInfo")
    extensions = Extensions()
    pos = spki[2]
    for optional in (0x81, 0x82, 0xA3):  # issuerUniqueID, subjectUniqueID, extensions
        if pos < tbs_end:
            tag, item_start, item_end = _der.read_tlv(der, pos, tbs_end)
            if tag == optional:
                if tag == 0xA3:
                    extensions = parse_extensions(der, item_start, item_end)
                pos = item_end
    if pos != tbs_end:
        raise ParseError("unexpected data at the end of tbsCertificate")

    not_before, not_after = _parse_validity(der, validity)
    key_type, key_bits, curve = _parse_key(der, spki[1], spki[2])
    issuer_text, issuer_cn = _names.parse_name(der, issuer[1], issuer[2])
    subject_text, subject_cn = _names.parse_name(der, subject[1], subject[2])
    return Certificate(
        der=der,
        version=version,
        serial_number=serial,
        issuer=issuer_text,
        subject=subject_text,
        subject_cn=subject_cn,
        issuer_cn=issuer_cn,
        not_valid_before_utc=not_before,
        not_valid_after_utc=not_after,
        san_dns=extensions.san_dns,
        san_ip=extensions.san_ip,
        public_key_type=key_type,
        public_key_bits=key_bits,
        curve=curve,
        signature_algorithm_oid=sig_oid,
        signature_algorithm=_names.signature_name(sig_oid),
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        is_ca=extensions.is_ca,
        subject_key_identifier=extensions.subject_key_identifier,
        authority_key_identifier=extensions.authority_key_identifier,
        # Whole Names, tag and length included: each starts where the
        # field before it ends.
        subject_der=der[validity[2] : subject[2]],
        issuer_der=der[inner_alg[2] : issuer[2]],
        crl_urls=extensions.crl_urls,
    )


def _parse_validity(der: bytes, validity: _der.Tlv) -> tuple[datetime, datetime]:
    first = _der.read_tlv(der, validity[1], validity[2])
    second = _der.read_tlv(der, first[2], validity[2])
    if second[2] != validity[2]:
        raise ParseError("trailing data in validity")
    return _parse_time(der, first), _parse_time(der, second)


_parse_time = _der.read_time  # moved to _der: CRLs read times too


def _parse_key(der: bytes, start: int, end: int) -> tuple[str, int, str | None]:
    # SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier,
    #                                     subjectPublicKey BIT STRING }
    _, alg_start, alg_end = _der.expect(der, start, end, _der.SEQUENCE, "algorithm")
    key = _der.expect(der, alg_end, end, _der.BIT_STRING, "subjectPublicKey")
    if key[2] != end:
        raise ParseError("trailing data in subjectPublicKeyInfo")
    _, oid_start, oid_end = _der.expect(der, alg_start, alg_end, _der.OID, "algorithm")
    oid = der[oid_start:oid_end]
    params = _der.read_tlv(der, oid_end, alg_end) if oid_end < alg_end else None
    if oid in (_names.KEY_RSA, _names.KEY_RSA_PSS):
        # RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
        if key[2] == key[1] or der[key[1]] != 0:
            raise ParseError("RSA key: bad BIT STRING")
        _, seq_start, seq_end = _der.expect(der, key[1] + 1, key[2], _der.SEQUENCE, "RSA key")
        modulus = _der.expect(der, seq_start, seq_end, _der.INTEGER, "RSA modulus")
        return "rsa", _unsigned_bits(der, modulus[1], modulus[2]), None
    if oid == _names.KEY_EC:
        if params is not None and params[0] == _der.OID:
            named = _names.CURVES.get(der[params[1] : params[2]])
            if named is not None:
                return "ecdsa", named[1], named[0]
        if params is not None and params[0] == _der.SEQUENCE:
            # specifiedCurve: the curve spelled out; name it when it is a named one.
            name, bits = explicit_curve(der, params[1], params[2])
            return "ecdsa", bits, f"{name or 'unknown'} (explicit parameters)"
        return "ecdsa", 0, None
    if oid == _names.ED25519:
        return "ed25519", 256, None
    if oid == _names.ED448:
        return "ed448", 456, None
    if oid == _names.KEY_DSA:
        # Dss-Parms ::= SEQUENCE { p INTEGER, q INTEGER, g INTEGER } (RFC 3279)
        if params is not None and params[0] == _der.SEQUENCE:
            prime = _der.expect(der, params[1], params[2], _der.INTEGER, "DSA p")
            return "dsa", _unsigned_bits(der, prime[1], prime[2]), None
        return "dsa", 0, None
    return "unknown", 0, None


def _unsigned_bits(der: bytes, start: int, end: int) -> int:
    # Bit length of a positive INTEGER without building the integer.
    while start < end and der[start] == 0:
        start += 1
    if start == end:
        return 0
    return (end - start - 1) * 8 + der[start].bit_length()


# RFC 7468 section 2; "X509 CERTIFICATE" is the pre-RFC label OpenSSL reads.
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]*)-----")
_PEM_END = re.compile(r"-----END ([A-Z0-9 ]*)-----")
_PEM_LABELS = ("CERTIFICATE", "X509 CERTIFICATE")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


def load_pem(data: bytes | str, source: str = "<pem>") -> list[Certificate]:
    """Parse every CERTIFICATE block of a PEM text, in order.

    Text around and between blocks is ignored (certbot's fullchain.pem,
    openssl's "subject=" lines), and so are blocks of other types (a private
    key in a combined file). No certificate block at all, a block without
    its END line, bad base64 or a bad certificate raise :class:`ParseError`.
    """
    text = data.decode("latin-1") if isinstance(data, (bytes, bytearray)) else data
    certificates: list[Certificate] = []
    pos = 0
    more_ends = True  # once no END line follows, none will: stay linear
    while True:
        begin = _PEM_BEGIN.search(text, pos)
        if begin is None:
            break
        end = _PEM_END.search(text, begin.end()) if more_ends else None
        more_ends = end is not None
        label = begin.group(1)
        if label not in _PEM_LABELS:
            pos = begin.end() if end is None else end.end()
            continue
        number = len(certificates) + 1
        if end is None or end.group(1) != label:
            raise ParseError(f"certificate {number}: no -----END {label}----- line", source)
        body = "".join(text[begin.end() : end.start()].split())
        if not body or len(body) % 4 or not _BASE64.fullmatch(body):
            raise ParseError(f"certificate {number}: bad base64", source)
        try:
            certificates.append(_parse(binascii.a2b_base64(body)))
        except ParseError as exc:
            raise ParseError(f"certificate {number}: {exc.reason}", source) from None
        pos = end.end()
    if not certificates:
        raise ParseError("no PEM CERTIFICATE block found", source)
    return certificates


def load_pem_file(path: str | os.PathLike[str]) -> list[Certificate]:
    """Read a PEM file such as certbot's cert.pem or fullchain.pem.

    OS errors become :class:`LocalError`, bad content :class:`ParseError`,
    both naming the path.
    """
    name = os.fsdecode(path)
    try:
        with open(path, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise LocalError(f"{name}: {exc.strerror or exc}") from exc
    return load_pem(data, name)
