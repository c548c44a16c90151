"""certhook.x509 on bad and odd input: a Certificate or ParseError, nothing else.

Certificates here are assembled by hand (``craft``), one field at a time, so
each case breaks exactly one thing; cryptography stays the oracle wherever it
accepts the input.
"""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from x509_oracle import DER, certhook_view, cryptography_view, mint, name

from certhook._der import encode_oid
from certhook.errors import ParseError
from certhook.x509 import Certificate, load_der, load_pem


def tlv(tag: int, *parts: bytes) -> bytes:
    content = b"".join(parts)
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def oid(dotted: str) -> bytes:
    return tlv(0x06, encode_oid(dotted))


def atv(dotted: str, value: bytes) -> bytes:
    """A one-attribute RDN: SET { SEQUENCE { type, value } }, value already encoded."""
    return tlv(0x31, tlv(0x30, oid(dotted), value))


ECDSA_SHA256 = tlv(0x30, oid("1.2.840.10045.4.3.2"))
SUBJECT = tlv(0x30, atv("2.5.4.3", tlv(0x0C, b"example.org")))
UTC_2024 = tlv(0x17, b"240101000000Z")
UTC_2025 = tlv(0x17, b"250101000000Z")


@functools.cache
def ec_spki() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def extension(dotted: str, value: bytes, critical: bool = False) -> bytes:
    return tlv(0x30, oid(dotted), tlv(0x01, b"\xff") if critical else b"", tlv(0x04, value))


def craft(
    *,
    version: bytes = tlv(0xA0, tlv(0x02, b"\x02")),
    serial: bytes = tlv(0x02, b"\x01"),
    issuer: bytes = SUBJECT,
    validity: bytes = tlv(0x30, UTC_2024, UTC_2025),
    subject: bytes = SUBJECT,
    spki: bytes | None = None,
    unique_ids: bytes = b"",
    extensions: list[bytes] | None = None,
) -> bytes:
    exts = b"" if extensions is None else tlv(0xA3, tlv(0x30, *extensions))
    tbs = tlv(
        0x30,
        version,
        serial,
        ECDSA_SHA256,
        issuer,
        validity,
        subject,
        ec_spki() if spki is None else spki,
        unique_ids,
        exts,
    )
    return tlv(0x30, tbs, ECDSA_SHA256, tlv(0x03, b"\x00" + tlv(0x30, tlv(2, b"\x01") * 2)))


def rewrap(der: bytes, extra: bytes) -> bytes:
    """The outer SEQUENCE of ``der`` with ``extra`` appended inside it."""
    header = 2 + (der[1] & 0x7F if der[1] & 0x80 else 0)
    return tlv(0x30, der[header:], extra)


def both(der: bytes) -> Certificate:
    """certhook's parse, after checking it field by field against cryptography's."""
    ours = load_der(der)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-positive serials
        assert certhook_view(ours) == cryptography_view(x509.load_der_x509_certificate(der))
    return ours


# ---------------------------------------------------------------- odd but valid


def test_version_1_certificate() -> None:
    ours = both(craft(version=b""))
    assert ours.version == 1 and ours.is_ca is None and ours.san_dns == ()


@pytest.mark.parametrize(
    ("time", "year"),
    [
        (tlv(0x17, b"500101000000Z"), 1950),
        (tlv(0x17, b"491231235959Z"), 2049),
        (tlv(0x18, b"19400101000000Z"), 1940),  # before UTCTime's range
        (tlv(0x18, b"00010101000000Z"), 1),
    ],
)
def test_time_encodings(time: bytes, year: int) -> None:
    ours = both(craft(validity=tlv(0x30, time, tlv(0x18, b"99991231235959Z"))))
    assert ours.not_valid_before_utc.year == year


@pytest.mark.parametrize(
    ("content", "value"),
    [(b"\x00", 0), (b"\xff", -1), (b"\x80", -128), (b"\x01" * 1024, int("01" * 1024, 16))],
)
def test_unusual_serials(content: bytes, value: int) -> None:
    ours = both(craft(serial=tlv(0x02, content)))
    assert ours.serial_number == value and ours.serial_hex == format(value, "x")
    assert str(value)[:20] in repr(ours)


def test_unique_identifiers_are_skipped() -> None:
    both(craft(unique_ids=tlv(0x81, b"\x00\xab") + tlv(0x82, b"\x00\xcd"), extensions=[]))


def test_authority_key_identifier_without_key_id() -> None:
    aki = tlv(0x30, tlv(0xA1, tlv(0xA4, SUBJECT)), tlv(0x82, b"\x05"))
    assert both(craft(extensions=[extension("2.5.29.35", aki)])).authority_key_identifier is None


def test_empty_extensions_and_unread_extensions() -> None:
    assert both(craft(extensions=[])).san_dns == ()
    policies = tlv(0x30, tlv(0x30, oid("2.5.29.32.0")))
    ours = both(
        craft(
            extensions=[
                extension("2.5.29.32", policies, critical=True),
                extension("2.5.29.19", tlv(0x30)),
            ]
        )
    )
    assert ours.is_ca is False


RSA = "1.2.840.113549.1.1.1"


def rsa_key(modulus: bytes, exponent: int) -> bytes:
    return tlv(0x30, tlv(0x02, modulus), tlv(0x02, bytes([exponent])))


# Inputs cryptography rejects and certhook reads, on purpose: a monitor should
# report what a server sent rather than give up on it.
@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"version": tlv(0xA0, tlv(0x02, b"\x01"))}, "version", 2),
        ({"subject": tlv(0x30, atv("2.5.4.3", tlv(0x14, b"caf\xe9")))}, "subject", "CN=café"),
        ({"subject": tlv(0x30, atv("2.5.4.3", tlv(0x13, b"a_b@c")))}, "subject_cn", "a_b@c"),
        ({"subject": tlv(0x30, atv("1.2.3", tlv(0x02, b"\x05")))}, "subject", "1.2.3=#020105"),
        ({"subject": tlv(0x30, atv("2.5.4.3", tlv(0x0C, b"\xff")))}, "subject", "CN=#0c01ff"),
        ({"subject": tlv(0x30, atv("2.5.4.3", tlv(0x1E, b"\xd8\x00")))}, "subject_cn", "#1e02d800"),
        (
            {
                "spki": tlv(
                    0x30, tlv(0x30, oid("1.2.840.10045.2.1"), oid("1.2.3")), tlv(0x03, b"\x00")
                )
            },
            "curve",
            None,
        ),
        (
            {"spki": tlv(0x30, tlv(0x30, oid("1.2.840.10040.4.1")), tlv(0x03, b"\x00"))},
            "public_key_type",
            "dsa",
        ),
        ({"extensions": [extension("2.5.29.19", tlv(0x30, tlv(0x02, b"\x01")))]}, "is_ca", False),
        (
            {"spki": tlv(0x30, tlv(0x30, oid(RSA)), tlv(0x03, b"\x00" + rsa_key(b"\x00", 3)))},
            "public_key_bits",
            0,
        ),
        (
            {"spki": tlv(0x30, tlv(0x30, oid("1.3.101.110")), tlv(0x03, b"\x00" * 33))},
            "public_key_type",
            "unknown",
        ),  # X25519: not a signing key
    ],
)
def test_lenient_where_cryptography_is_strict(kwargs: Any, field: str, value: object) -> None:
    assert getattr(load_der(craft(**kwargs)), field) == value


# ---------------------------------------------------------------- malformed

SAN = "2.5.29.17"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated value at offset 0"),
        (b"\x31\x00", "Certificate: expected tag 0x30, found 0x31"),
        (b"\x30\x84\xff\xff\xff\xff", "truncated value at offset 0"),
        (b"\x30\x88" + b"\xff" * 8, "length of 8 octets at offset 0"),
        (b"\x30\xff", "length of 127 octets"),
        (b"\x30\x80\x30\x00\x00\x00", "indefinite length at offset 0"),
        (b"\x3f\x81\x00", "unsupported long-form tag"),
        (b"\x30\x81\x03\x30\x01\x00", "non-minimal length"),
        (b"\x30\x82\x00\x80" + bytes(128), "non-minimal length"),
        (b"\x30\x00", "truncated value at offset 2"),
        (craft() + b"\x00", "1 bytes of trailing data after the certificate"),
        (rewrap(craft(), b"\x05\x00"), "trailing data in Certificate"),
        (craft(version=tlv(0xA0, tlv(0x02, b"\x03"))), "unknown X.509 version 0x03"),
        (craft(version=tlv(0xA0, tlv(0x02, b"\x01" * 2000))), "unknown X.509 version 0x0101"),
        (craft(serial=tlv(0x02, b"\x01" * 1025)), "serialNumber of 1025 octets"),
        (craft(subject=tlv(0x30, atv("1.2." + "9" * 50, tlv(0x0C, b"a")))), "arc too large"),
        (craft(version=tlv(0xA0, tlv(0x04, b"\x02"))), "version: expected tag 0x02"),
        (craft(version=tlv(0xA0, tlv(0x02, b"\x02"), b"\x05\x00")), "trailing data in version"),
        (craft(serial=tlv(0x02, b"")), "empty INTEGER"),
        (craft(serial=tlv(0x04, b"\x01")), "serialNumber: expected tag 0x02"),
        (craft(validity=tlv(0x30, UTC_2024)), "truncated value"),
        (craft(validity=tlv(0x30, UTC_2024, UTC_2025, UTC_2025)), "trailing data in validity"),
        (craft(validity=tlv(0x30, tlv(0x17, b"2401010000Z"), UTC_2025)), "malformed time"),
        (craft(validity=tlv(0x30, tlv(0x17, b"240101000000+0100"), UTC_2025)), "malformed time"),
        (craft(validity=tlv(0x30, tlv(0x18, b"20240101000000.5Z"), UTC_2025)), "malformed time"),
        (craft(validity=tlv(0x30, tlv(0x17, b"24010100000\xd9Z"), UTC_2025)), "malformed time"),
        (craft(validity=tlv(0x30, tlv(0x17, b"240230000000Z"), UTC_2025)), "impossible date"),
        (craft(validity=tlv(0x30, tlv(0x18, b"00000101000000Z"), UTC_2025)), "impossible date"),
        (craft(validity=tlv(0x30, tlv(0x04, b"240101000000Z"), UTC_2025)), "malformed time"),
        (craft(subject=tlv(0x30, tlv(0x31, b""))), "empty RelativeDistinguishedName"),
        (craft(subject=tlv(0x30, tlv(0x30, b""))), "Name: expected a SET"),
        (craft(subject=tlv(0x30, tlv(0x31, tlv(0x04, b"")))), "malformed AttributeTypeAndValue"),
        (
            craft(subject=tlv(0x30, atv("2.5.4.3", tlv(0x0C, b"a") + b"\x00\x00"))),
            "trailing data in AttributeTypeAndValue",
        ),
        (
            craft(subject=tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, b"\x80\x01"), tlv(0x0C, b"a"))))),
            "malformed OBJECT IDENTIFIER",
        ),
        (
            craft(subject=tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, b""), tlv(0x0C, b"a"))))),
            "malformed OBJECT IDENTIFIER",
        ),
        (
            craft(subject=tlv(0x30, tlv(0x31, tlv(0x30, tlv(0x06, b"\x2a\x86"), tlv(0x0C, b"a"))))),
            "malformed OBJECT IDENTIFIER",
        ),
        (
            craft(
                spki=tlv(0x30, tlv(0x30, oid("1.2.840.113549.1.1.1")), tlv(0x03, b"\x01\x30\x00"))
            ),
            "RSA key: bad BIT STRING",
        ),
        (
            craft(spki=tlv(0x30, tlv(0x30, oid("1.2.840.113549.1.1.1")), tlv(0x03, b""))),
            "RSA key: bad BIT STRING",
        ),
        (craft(unique_ids=tlv(0x82, b"\x00") + tlv(0x81, b"\x00")), "unexpected data at the end"),
        (
            craft(spki=tlv(0x30, tlv(0x30, oid(RSA)), tlv(0x03, b"\x00"), tlv(0x05))),
            "trailing data in subjectPublicKeyInfo",
        ),
        (craft(unique_ids=tlv(0xA3, tlv(0x31))), "extensions: expected tag 0x30"),
        (craft(unique_ids=tlv(0xA3, tlv(0x30), b"\x05\x00")), "trailing data after extensions"),
        (
            craft(extensions=[extension(SAN, tlv(0x30)), extension(SAN, tlv(0x30))]),
            "duplicate extension 2.5.29.17",
        ),
        (craft(extensions=[tlv(0x31, oid(SAN), tlv(0x04, b""))]), "expected a SEQUENCE"),
        (
            craft(extensions=[tlv(0x30, oid(SAN), tlv(0x01, b"\xff\xff"), tlv(0x04, b""))]),
            "malformed critical flag",
        ),
        (craft(extensions=[tlv(0x30, oid(SAN), tlv(0x03, b""))]), "malformed extnValue"),
        (
            craft(extensions=[extension(SAN, tlv(0x30, tlv(0x87, b"\x01\x02\x03\x04\x05")))]),
            "iPAddress of 5 octets",
        ),
        (
            craft(extensions=[extension(SAN, tlv(0x30, tlv(0x87, bytes(8))))]),
            "iPAddress of 8 octets",
        ),
        (
            craft(extensions=[extension(SAN, tlv(0x30, tlv(0x82, b"\xff.example")))]),
            "dNSName is not text",
        ),
        (craft(extensions=[extension(SAN, tlv(0x30) + b"\x00")]), "subjectAltName: trailing"),
        (
            craft(extensions=[extension("2.5.29.19", tlv(0x30, tlv(0x01, b"")))]),
            "malformed cA flag",
        ),
        (craft(extensions=[extension("2.5.29.14", tlv(0x30))]), "SKI: expected tag 0x04"),
        (
            craft(extensions=[extension("2.5.29.35", tlv(0x04))]),
            "authorityKeyIdentifier: expected tag 0x30",
        ),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(ParseError) as info:
        load_der(data, source="peer.example:443")
    assert str(info.value).startswith("peer.example:443: ")
    assert message in info.value.reason


@functools.cache
def samples() -> tuple[bytes, ...]:
    import ipaddress

    rich = mint(
        key="rsa2048",
        subject=name((NameOID.COMMON_NAME, "example.org"), (NameOID.ORGANIZATION_NAME, "Ex")),
        sans=[x509.DNSName("example.org"), x509.IPAddress(ipaddress.ip_address("::1"))],
        ca=False,
    )
    return rich.public_bytes(DER), mint(key="ed25519").public_bytes(DER), craft(version=b"")


def test_every_truncation_is_a_parse_error() -> None:
    for der in samples():
        load_der(der)
        for size in range(len(der)):
            with pytest.raises(ParseError):
                load_der(der[:size])


def test_trailing_data_is_a_parse_error() -> None:
    for der in samples():
        for tail in (b"\x00", b"\x30\x00", der):
            with pytest.raises(ParseError, match="trailing data"):
                load_der(der + tail)


# ---------------------------------------------------------------- fuzzing

_FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parse(data: bytes) -> Certificate | None:
    """The invariant: a Certificate or ParseError; anything else fails the test."""
    try:
        return load_der(data, source="fuzz")
    except ParseError as exc:
        assert exc.source == "fuzz"
        return None


def agrees_with_cryptography(data: bytes) -> None:
    ours = parse(data)
    if ours is None:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = cryptography_view(x509.load_der_x509_certificate(data))
    except Exception:  # cryptography refuses something certhook tolerates
        return
    assert certhook_view(ours) == theirs


@_FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    parse(data)


@_FUZZ
@given(st.binary(max_size=600), st.sampled_from([b"\x30\x82", b"\x30\x81", b"\x30"]))
def test_random_bytes_in_a_sequence(body: bytes, head: bytes) -> None:
    size = len(body).to_bytes(2, "big")
    parse(head + (size if head == b"\x30\x82" else size[1:]) + body)


@_FUZZ
@given(st.data())
def test_bit_flips(data: st.DataObject) -> None:
    der = bytearray(data.draw(st.sampled_from(samples())))
    for bit in data.draw(st.lists(st.integers(0, len(der) * 8 - 1), min_size=1, max_size=3)):
        der[bit // 8] ^= 1 << (bit % 8)
    agrees_with_cryptography(bytes(der))


@_FUZZ
@given(st.data())
def test_byte_edits(data: st.DataObject) -> None:
    der = data.draw(st.sampled_from(samples()))
    start = data.draw(st.integers(0, len(der)))
    stop = data.draw(st.integers(start, min(len(der), start + 4)))
    agrees_with_cryptography(der[:start] + data.draw(st.binary(max_size=4)) + der[stop:])


@_FUZZ
@given(st.text(max_size=300), st.text(st.sampled_from("AQIMgw=+/\r\n \t-"), max_size=200))
def test_random_pem(text: str, body: str) -> None:
    for data in (text, f"{text}-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----"):
        try:
            load_pem(data, source="fuzz.pem")
        except ParseError as exc:
            assert exc.source == "fuzz.pem"
