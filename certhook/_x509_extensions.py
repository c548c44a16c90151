"""The few X.509 v3 extensions certhook reads (RFC 5280 section 4.2).

subjectAltName (dNSName and iPAddress entries), basicConstraints (the cA
flag), subjectKeyIdentifier, the keyIdentifier of authorityKeyIdentifier,
and the http(s) URIs of cRLDistributionPoints. Other extensions are skipped without decoding their
values, but every extension's envelope is checked, and a repeated extension
is malformed (RFC 5280 4.2: "MUST NOT include more than one instance").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from certhook import _der
from certhook.errors import ParseError

__all__ = ["Extensions", "parse_extensions"]

_SAN = _der.encode_oid("2.5.29.17")
_BASIC_CONSTRAINTS = _der.encode_oid("2.5.29.19")
_SKI = _der.encode_oid("2.5.29.14")
_AKI = _der.encode_oid("2.5.29.35")
_CRL_DP = _der.encode_oid("2.5.29.31")

# GeneralName choices (RFC 5280 4.2.1.6), IMPLICIT tags on primitive types.
_DNS_NAME = 0x82
_IP_ADDRESS = 0x87
# AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT ... }
_KEY_IDENTIFIER = 0x80
# DistributionPoint ::= SEQUENCE { distributionPoint [0] DistributionPointName
#   OPTIONAL, ... }; DistributionPointName ::= CHOICE { fullName [0]
#   GeneralNames, ... } (RFC 5280 4.2.1.13), both constructed under IMPLICIT tags.
_DISTRIBUTION_POINT = 0xA0
_FULL_NAME = 0xA0
_URI = 0x86  # uniformResourceIdentifier [6] IA5String


@dataclass(frozen=True)
class Extensions:
    """What :func:`parse_extensions` found; the defaults mean "absent"."""

    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    is_ca: bool | None = None
    subject_key_identifier: bytes | None = None
    authority_key_identifier: bytes | None = None
    crl_urls: tuple[str, ...] = ()


def parse_extensions(der: bytes, start: int, end: int) -> Extensions:
    """Parse ``extensions [3] EXPLICIT Extensions`` whose contents are ``der[start:end]``."""
    _, pos, seq_end = _der.expect(der, start, end, _der.SEQUENCE, "extensions")
    if seq_end != end:
        raise ParseError("trailing data after extensions")
    found: dict[bytes, tuple[int, int]] = {}
    for tag, ext_start, ext_end in _der.iter_tlvs(der, pos, end):
        # Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
        #                          extnValue OCTET STRING }
        if tag != _der.SEQUENCE:
            raise ParseError(f"extension: expected a SEQUENCE, found tag 0x{tag:02x}")
        _, oid_start, oid_end = _der.expect(der, ext_start, ext_end, _der.OID, "extnID")
        tag, value_start, value_end = _der.read_tlv(der, oid_end, ext_end)
        if tag == _der.BOOLEAN:
            if value_end - value_start != 1:
                raise ParseError("extension: malformed critical flag")
            tag, value_start, value_end = _der.read_tlv(der, value_end, ext_end)
        if tag != _der.OCTET_STRING or value_end != ext_end:
            raise ParseError("extension: malformed extnValue")
        oid = der[oid_start:oid_end]
        if oid in found:
            raise ParseError(f"duplicate extension {_der.decode_oid(oid)}")
        found[oid] = (value_start, value_end)

    dns: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    if _SAN in found:
        dns, addresses = _parse_san(der, *found[_SAN])
    is_ca = None
    if _BASIC_CONSTRAINTS in found:
        is_ca = _parse_basic_constraints(der, *found[_BASIC_CONSTRAINTS])
    ski = None
    if _SKI in found:
        _, ski_start, ski_end = _exactly(der, *found[_SKI], _der.OCTET_STRING, "SKI")
        ski = der[ski_start:ski_end]
    aki = _parse_aki(der, *found[_AKI]) if _AKI in found else None
    crl_urls = _parse_crl_dp(der, *found[_CRL_DP]) if _CRL_DP in found else ()
    return Extensions(dns, addresses, is_ca, ski, aki, crl_urls)


def _exactly(der: bytes, start: int, end: int, tag: int, what: str) -> _der.Tlv:
    # An extnValue holds exactly one encoded value.
    tlv = _der.expect(der, start, end, tag, what)
    if tlv[2] != end:
        raise ParseError(f"{what}: trailing data")
    return tlv


def _parse_san(der: bytes, start: int, end: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    _, pos, seq_end = _exactly(der, start, end, _der.SEQUENCE, "subjectAltName")
    dns = []
    addresses = []
    for tag, value_start, value_end in _der.iter_tlvs(der, pos, seq_end):
        if tag == _DNS_NAME:
            # IA5String; cryptography reads it as UTF-8 and so do we.
            try:
                dns.append(der[value_start:value_end].decode("utf-8"))
            except UnicodeDecodeError:
                raise ParseError("subjectAltName: dNSName is not text") from None
        elif tag == _IP_ADDRESS:
            raw = der[value_start:value_end]
            # Four or sixteen octets (RFC 5280 4.2.1.6); eight and 32 are
            # address/mask pairs, which belong in name constraints only.
            if len(raw) == 4:
                addresses.append(str(ipaddress.IPv4Address(raw)))
            elif len(raw) == 16:
                addresses.append(str(ipaddress.IPv6Address(raw)))
            else:
                raise ParseError(f"subjectAltName: iPAddress of {len(raw)} octets")
    return tuple(dns), tuple(addresses)


def _parse_basic_constraints(der: bytes, start: int, end: int) -> bool:
    # BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE,
    #                                 pathLenConstraint INTEGER OPTIONAL }
    _, pos, seq_end = _exactly(der, start, end, _der.SEQUENCE, "basicConstraints")
    if pos == seq_end:
        return False
    tag, value_start, value_end = _der.read_tlv(der, pos, seq_end)
    if tag != _der.BOOLEAN:
        return False
    if value_end - value_start != 1:
        raise ParseError("basicConstraints: malformed cA flag")
    return der[value_start] != 0


def _parse_aki(der: bytes, start: int, end: int) -> bytes | None:
    _, pos, seq_end = _exactly(der, start, end, _der.SEQUENCE, "authorityKeyIdentifier")
    for tag, value_start, value_end in _der.iter_tlvs(der, pos, seq_end):
        if tag == _KEY_IDENTIFIER:
            return der[value_start:value_end]
    return None


def _parse_crl_dp(der: bytes, start: int, end: int) -> tuple[str, ...]:
    """The http(s) URIs of the fullNames; LDAP URIs, relative names and other
    GeneralNames are not fetched by certhook, so they are skipped."""
    _, pos, seq_end = _exactly(der, start, end, _der.SEQUENCE, "cRLDistributionPoints")
    urls: list[str] = []
    for tag, point_start, point_end in _der.iter_tlvs(der, pos, seq_end):
        if tag != _der.SEQUENCE:
            raise ParseError("cRLDistributionPoints: a point is not a SEQUENCE")
        for field_tag, field_start, field_end in _der.iter_tlvs(der, point_start, point_end):
            if field_tag != _DISTRIBUTION_POINT:
                continue
            for name_tag, name_start, name_end in _der.iter_tlvs(der, field_start, field_end):
                if name_tag != _FULL_NAME:
                    continue
                for gn_tag, gn_start, gn_end in _der.iter_tlvs(der, name_start, name_end):
                    raw = der[gn_start:gn_end]
                    if gn_tag == _URI and raw.isascii() and raw[:8].lower().startswith(
                            (b"http://", b"https://")):
                        urls.append(raw.decode("ascii"))
    return tuple(urls)
