"""certhook.x509 field by field against cryptography, and identifiers against certbot.

Tables cover key types, signature algorithms, name forms, SANs, both time
encodings and serial sizes; hypothesis then draws names, SANs, serials and
dates. The oracles live in x509_oracle.py.
"""

from __future__ import annotations

import datetime
import ipaddress
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from x509_oracle import (
    DER,
    KEYS,
    UTC,
    certbot_identifiers,
    check,
    extension_value,
    mint,
    name,
    replace_bytes,
)

from certhook._der import encode_oid
from certhook.x509 import load_der, load_pem

# ---------------------------------------------------------------- tables


@pytest.mark.parametrize("key", sorted(KEYS))
def test_key_types(key: str) -> None:
    check(mint(key=key))


@pytest.mark.parametrize(
    ("key", "digest", "pss", "expected"),
    [
        ("rsa2048", hashes.SHA384(), False, "sha384WithRSAEncryption"),
        ("rsa2048", hashes.SHA256(), False, "sha256WithRSAEncryption"),
        ("rsa2048", hashes.SHA512(), False, "sha512WithRSAEncryption"),
        ("rsa2048", None, True, "rsassaPss"),
        ("p384", hashes.SHA384(), False, "ecdsa-with-SHA384"),
        ("p256", hashes.SHA256(), False, "ecdsa-with-SHA256"),
        ("ed25519", None, False, "ed25519"),
        ("ed448", None, False, "ed448"),
        ("dsa2048", hashes.SHA256(), False, "dsa-with-sha256"),
    ],
)
def test_signature_algorithms(
    key: str, digest: hashes.HashAlgorithm | None, pss: bool, expected: str
) -> None:
    assert check(mint(key=key, digest=digest, pss=pss)).signature_algorithm == expected


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("1.2.840.113549.1.1.4", "md5WithRSAEncryption"),
        ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),  # cryptography won't sign it
        ("1.2.840.113549.1.1.99", "1.2.840.113549.1.1.99"),  # "Unknown OID" there
    ],
)
def test_signature_algorithms_by_oid(dotted: str, expected: str) -> None:
    der = mint(key="rsa1024").public_bytes(DER)
    old, new = encode_oid("1.2.840.113549.1.1.11"), encode_oid(dotted)
    assert der.count(old) == 2  # in tbsCertificate and around the signature
    ours = check(x509.load_der_x509_certificate(der.replace(old, new)))
    assert (ours.signature_algorithm_oid, ours.signature_algorithm) == (dotted, expected)


# cryptography refuses to build a NUL into a name, so a marker of the same
# length stands for it and mint_names() swaps it in afterwards.
NUL_MARK = "\x01"


def mint_names(subject: x509.Name, issuer: x509.Name | None = None) -> x509.Certificate:
    der = mint(subject=subject, issuer=issuer).public_bytes(DER)
    for attribute in subject:
        if isinstance(attribute.value, str) and NUL_MARK in attribute.value:
            value = attribute.value.encode()
            der = der.replace(value, value.replace(NUL_MARK.encode(), b"\x00"))
    return x509.load_der_x509_certificate(der)


NAMES = {
    "cn only": name((NameOID.COMMON_NAME, "example.org")),
    "full": name(
        (NameOID.COUNTRY_NAME, "US"),
        (NameOID.STATE_OR_PROVINCE_NAME, "California"),
        (NameOID.LOCALITY_NAME, "San Francisco"),
        (NameOID.ORGANIZATION_NAME, "Example, Inc."),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops"),
        (NameOID.COMMON_NAME, "www.example.org"),
    ),
    "multi-valued rdn": x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COUNTRY_NAME, "FR")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "a+b"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Org"),
                    x509.NameAttribute(NameOID.USER_ID, "jdoe"),
                ]
            ),
        ]
    ),
    "escapes": name(
        (NameOID.COMMON_NAME, ' #a,b+c"d\\e<f>g;h\x00i= '.replace("\x00", NUL_MARK)),
        (NameOID.ORGANIZATION_NAME, "#hash"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, " lead"),
        (NameOID.LOCALITY_NAME, "trail "),
        (NameOID.STATE_OR_PROVINCE_NAME, " "),
        (NameOID.STREET_ADDRESS, "  "),
        (NameOID.TITLE, ""),
    ),
    "unicode": name(
        (NameOID.COMMON_NAME, "bücher.example"),
        (NameOID.ORGANIZATION_NAME, "株式会社"),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "party 🎉"),
    ),
    "no cn": name((NameOID.ORGANIZATION_NAME, "No CN Ltd"), (NameOID.COUNTRY_NAME, "GB")),
    "two cns": name((NameOID.COMMON_NAME, "first.example"), (NameOID.COMMON_NAME, "second")),
    "unknown oids": name(
        (x509.ObjectIdentifier("1.2.3.4.5"), "value"),
        (x509.ObjectIdentifier("2.999.1"), "#x"),
        (x509.ObjectIdentifier("1.3.6.1.4.1.311.60.2.1.3"), "US"),
    ),
    "email and dc": name(
        (NameOID.DOMAIN_COMPONENT, "org"),
        (NameOID.DOMAIN_COMPONENT, "example"),
        (NameOID.EMAIL_ADDRESS, "admin@example.org"),
        (NameOID.SERIAL_NUMBER, "1234"),
    ),
    "other attributes": name(
        (NameOID.GIVEN_NAME, "Ada"),
        (NameOID.SURNAME, "Lovelace"),
        (NameOID.POSTAL_CODE, "12345"),
        (NameOID.BUSINESS_CATEGORY, "Private Organization"),
        (NameOID.ORGANIZATION_IDENTIFIER, "VATFR-123"),
        (NameOID.X500_UNIQUE_IDENTIFIER, b"\x00\x01\xfe", _ASN1Type.BitString),
    ),
    "string types": name(
        (NameOID.COMMON_NAME, "bmp ☃", _ASN1Type.BMPString),
        (NameOID.ORGANIZATION_NAME, "universal 🎉", _ASN1Type.UniversalString),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, "printable", _ASN1Type.PrintableString),
        (NameOID.LOCALITY_NAME, "ia5", _ASN1Type.IA5String),
        (NameOID.STATE_OR_PROVINCE_NAME, "t61 é", _ASN1Type.T61String),
        (NameOID.STREET_ADDRESS, "visible", _ASN1Type.VisibleString),
        (NameOID.POSTAL_CODE, "0123", _ASN1Type.NumericString),
    ),
    "empty": x509.Name([]),
}


@pytest.mark.parametrize("label", sorted(NAMES))
def test_names(label: str) -> None:
    issuer = name((NameOID.COMMON_NAME, "Issuing CA"), (NameOID.ORGANIZATION_NAME, "CA Org"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cryptography warns of a 0-length attribute
        ours = check(mint_names(NAMES[label], issuer))
    assert ours.issuer == "O=CA Org,CN=Issuing CA"
    assert ours.issuer_cn == "Issuing CA"


def test_names_render_as_documented() -> None:
    # Fixed strings, so a regression shows even if cryptography changes too.
    ours = check(mint_names(NAMES["escapes"]))
    assert ours.subject == (  # reversed: the last attribute comes first
        "2.5.4.12=,STREET=\\ \\ ,ST=\\ ,L=trail\\ ,OU=\\ lead,O=\\#hash,"
        + 'CN=\\ #a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\00i=\\ '
    )
    assert check(mint(subject=NAMES["email and dc"])).subject == (
        "2.5.4.5=1234,1.2.840.113549.1.9.1=admin@example.org,DC=example,DC=org"
    )
    assert check(mint(subject=NAMES["two cns"])).subject_cn == "first.example"
    assert check(mint(subject=NAMES["no cn"])).subject_cn is None


SANS = {
    "none": None,
    "dns": [x509.DNSName("example.org"), x509.DNSName("*.example.org")],
    "cn repeated": [x509.DNSName("www.example.org"), x509.DNSName("example.org")],
    "mixed": [
        x509.DNSName("a.example"),
        x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
        x509.UniformResourceIdentifier("https://example.org/"),
        x509.RFC822Name("admin@example.org"),
        x509.IPAddress(ipaddress.ip_address("2001:db8::1")),
        x509.DirectoryName(name((NameOID.COMMON_NAME, "dir"))),
        x509.DNSName("b.example"),
        x509.IPAddress(ipaddress.ip_address("::ffff:192.0.2.1")),
    ],
    "upper case and trailing dot": [x509.DNSName("WWW.Example.ORG."), x509.DNSName("x.test")],
    "ip only": [x509.IPAddress(ipaddress.ip_address("10.0.0.1"))],
    "duplicates": [x509.DNSName("a.test"), x509.DNSName("a.test"), x509.DNSName("b.test")],
}


@pytest.mark.parametrize("label", sorted(SANS))
@pytest.mark.parametrize("cn", ["example.org", None])
def test_sans_and_identifiers(label: str, cn: str | None) -> None:
    subject = name((NameOID.COMMON_NAME, cn)) if cn else name((NameOID.ORGANIZATION_NAME, "O"))
    ours = check(mint(subject=subject, sans=SANS[label]))
    # check() compared them with certbot's own code; the CN always leads.
    if cn:
        assert ours.identifiers[0] == cn


def test_identifiers_match_certbot_examples() -> None:
    cert = mint(
        subject=name((NameOID.COMMON_NAME, "example.org")),
        sans=[
            x509.DNSName("www.example.org"),
            x509.DNSName("example.org"),
            x509.IPAddress(ipaddress.ip_address("2001:db8:0:0::1")),
        ],
    )
    assert check(cert).identifiers == ("example.org", "www.example.org", "2001:db8::1")


def test_identifiers_cn_that_is_an_ip_address() -> None:
    # certbot 5 raises ConfigurationError here (certbot#10773); certhook lists
    # the address once, with the addresses.
    cert = mint(
        subject=name((NameOID.COMMON_NAME, "192.0.2.1")),
        sans=[x509.DNSName("a.test"), x509.IPAddress(ipaddress.ip_address("192.0.2.1"))],
    )
    assert check(cert).identifiers == ("a.test", "192.0.2.1")
    cert = mint(subject=name((NameOID.COMMON_NAME, "::1")), sans=[x509.DNSName("a.test")])
    assert check(cert).identifiers == ("a.test", "::1")


@pytest.mark.parametrize(
    ("not_before", "not_after"),
    [
        ((2024, 1, 1), (2024, 3, 31, 23, 59, 59)),
        ((1950, 1, 1), (2049, 12, 31, 23, 59, 59)),  # both ends of UTCTime
        ((2049, 12, 31), (2050, 1, 1)),  # UTCTime, then GeneralizedTime
        ((2000, 2, 29, 12), (2051, 6, 1)),
        ((1999, 12, 31, 23, 59, 59), (9999, 12, 31, 23, 59, 59)),
    ],
)
def test_validity(not_before: tuple[int, ...], not_after: tuple[int, ...]) -> None:
    ours = check(
        mint(
            not_before=datetime.datetime(*not_before, tzinfo=UTC),  # type: ignore[misc]
            not_after=datetime.datetime(*not_after, tzinfo=UTC),  # type: ignore[misc]
        )
    )
    assert ours.not_valid_after_utc == datetime.datetime(*not_after, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("serial", "hex_"),
    [
        (1, "1"),
        (127, "7f"),
        (128, "80"),
        (255, "ff"),
        (256, "100"),
        (0x7D14055FD39767CA, "7d14055fd39767ca"),  # as `certbot certificates` prints
        (2**63, "8000000000000000"),
        (2**159 - 1, "7" + "f" * 39),  # the largest 20-octet serial
        (0xFF_0000_0000_0000_0000, "ff" + "0" * 16),
    ],
)
def test_serial_numbers(serial: int, hex_: str) -> None:
    assert check(mint(serial=serial)).serial_hex == hex_


@pytest.mark.parametrize("ca", [True, False, None])
@pytest.mark.parametrize("key_ids", [True, False])
def test_basic_constraints_and_key_identifiers(ca: bool | None, key_ids: bool) -> None:
    ours = check(mint(ca=ca, key_ids=key_ids))
    assert ours.is_ca is ca
    assert (ours.subject_key_identifier is not None) is key_ids


# ---------------------------------------------------------------- derived values


def test_chain_links_and_self_signed() -> None:
    import trustme

    ca = trustme.CA()
    intermediate = ca.create_child_ca()
    leaf = intermediate.issue_cert("leaf.example")
    chain = load_pem(b"".join(p.bytes() for p in leaf.cert_chain_pems) + ca.cert_pem.bytes())
    assert [c.is_ca for c in chain] == [False, True, True]
    for child, parent in zip(chain, chain[1:]):
        assert child.issuer_der == parent.subject_der
        assert child.issuer == parent.subject
        assert child.authority_key_identifier == parent.subject_key_identifier
    assert [c.self_signed for c in chain] == [False, False, True]


def test_self_signed_needs_matching_key_identifiers() -> None:
    same = name((NameOID.COMMON_NAME, "same"))
    assert load_der(mint(subject=same).public_bytes(DER)).self_signed
    other = mint(key="p384", subject=same)
    # Same names, but the AKI names another key: a different CA of that name.
    key_id = extension_value(other, x509.AuthorityKeyIdentifier).key_identifier
    # keyIdentifier [0] IMPLICIT OCTET STRING, inside the AKI only.
    swapped = replace_bytes(other.public_bytes(DER), b"\x80\x14" + key_id, b"\x80\x14" + bytes(20))
    assert not load_der(swapped).self_signed


@pytest.mark.parametrize(
    ("delta", "days"),
    [
        (datetime.timedelta(days=30), 30),
        (datetime.timedelta(days=30, seconds=-1), 29),
        (datetime.timedelta(hours=5), 0),
        (datetime.timedelta(seconds=-1), -1),
        (datetime.timedelta(days=-2, hours=1), -2),
    ],
)
def test_days_left_is_certbots_figure(delta: datetime.timedelta, days: int) -> None:
    cert = load_der(mint().public_bytes(DER))
    now = cert.not_valid_after_utc - delta
    assert cert.days_left(now) == days == (cert.not_valid_after_utc - now).days
    local = now.astimezone(datetime.timezone(datetime.timedelta(hours=-7)))
    assert cert.days_left(local) == days
    with pytest.raises(ValueError, match="timezone-aware"):
        cert.days_left(now.replace(tzinfo=None))


def test_days_left_defaults_to_now() -> None:
    not_after = datetime.datetime.now(UTC) + datetime.timedelta(days=10, hours=1)
    cert = load_der(
        mint(not_before=not_after - datetime.timedelta(90), not_after=not_after).public_bytes(DER)
    )
    assert cert.days_left() == 10


def test_repr_leaves_out_der() -> None:
    cert = load_der(mint().public_bytes(DER))
    assert "der=" not in repr(cert) and "subject='CN=example.org'" in repr(cert)
    assert load_der(bytearray(cert.der)) == cert == load_der(memoryview(cert.der))


# ---------------------------------------------------------------- hypothesis

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_PRINTABLE = st.text(st.sampled_from("ABCXYZabcxyz0189 '()+,-./:=?"), min_size=1, max_size=12)
_ASCII = st.text(st.characters(min_codepoint=0, max_codepoint=127), min_size=1, max_size=12)
_OIDS = st.sampled_from(
    [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.STREET_ADDRESS,
        NameOID.USER_ID,
        NameOID.TITLE,
        x509.ObjectIdentifier("1.2.3.4"),
        x509.ObjectIdentifier("2.25.12345678901234567890"),
    ]
)
_ATTRIBUTES = st.one_of(
    st.tuples(
        _OIDS,
        _TEXT,
        st.sampled_from([_ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.UniversalString]),
    ),
    st.tuples(_OIDS, _PRINTABLE, st.just(_ASN1Type.PrintableString)),
    st.tuples(_OIDS, _ASCII, st.sampled_from([_ASN1Type.IA5String, _ASN1Type.T61String])),
)


@st.composite
def names(draw: st.DrawFn) -> x509.Name:
    rdns = draw(
        st.lists(
            st.lists(_ATTRIBUTES, min_size=1, max_size=3, unique_by=lambda a: a[0]), max_size=5
        )
    )
    return x509.Name(
        [x509.RelativeDistinguishedName([x509.NameAttribute(*a) for a in rdn]) for rdn in rdns]
    )


_LABEL = st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?\Z")
_DNS = st.builds(
    lambda labels, dot: ".".join(labels) + dot,
    st.lists(_LABEL, min_size=1, max_size=4),
    st.sampled_from(["", "."]),
)
_SAN = st.one_of(
    _DNS.map(x509.DNSName),
    st.ip_addresses().map(x509.IPAddress),
    st.just(x509.UniformResourceIdentifier("https://example.org/")),
)
_TIMES = st.datetimes(
    datetime.datetime(1950, 1, 1), datetime.datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=0))
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(
    subject=names(),
    issuer=names(),
    serial=st.integers(1, 2**159 - 1),
    times=st.lists(_TIMES, min_size=2, max_size=2, unique=True).map(sorted),
)
def test_hypothesis_against_cryptography(
    subject: x509.Name, issuer: x509.Name, serial: int, times: list[datetime.datetime]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check(
            mint(
                subject=subject,
                issuer=issuer,
                serial=serial,
                not_before=times[0],
                not_after=times[1],
            )
        )


@_SETTINGS
@given(cn=st.none() | _DNS, sans=st.lists(_SAN, min_size=1, max_size=6))
def test_hypothesis_identifiers_against_certbot(
    cn: str | None, sans: list[x509.GeneralName]
) -> None:
    subject = name((NameOID.COMMON_NAME, cn)) if cn else x509.Name([])
    cert = mint(subject=subject, sans=sans)
    expected = certbot_identifiers(cert)
    assume(expected is not None)
    assert check(cert).identifiers == expected
