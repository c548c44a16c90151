"""OID tables and X.501 Name formatting for :mod:`certhook.x509`.

Names render exactly as pyca/cryptography's ``Name.rfc4514_string()`` does
(cryptography 41-50): RDNs in reverse order (RFC 4514 section 2.1), the
attributes of a multi-valued RDN joined by ``+`` in their DER order, short
names only for the nine attributes in cryptography's ``_NAMEOID_TO_NAME``
(so emailAddress prints as ``1.2.840.113549.1.9.1=...``), every other type
as its dotted OID, and cryptography's escaping of values.

Values cryptography refuses to parse are still rendered, never raised on:
a T61String that is not UTF-8 is read as Latin-1 (as OpenSSL does), and a
value that is not text at all, or not valid in its declared encoding, prints
as ``#`` and the hex of its DER encoding (RFC 4514 section 2.4).
"""

from __future__ import annotations

import re

from certhook import _der
from certhook.errors import ParseError

__all__ = [
    "CURVES",
    "ED448",
    "ED25519",
    "KEY_DSA",
    "KEY_EC",
    "KEY_RSA",
    "KEY_RSA_PSS",
    "escape_value",
    "parse_name",
    "signature_name",
]


def _table(pairs: dict[str, str]) -> dict[bytes, str]:
    # Keyed by the OID's encoded contents, so lookups need no decoding.
    return {_der.encode_oid(dotted): name for dotted, name in pairs.items()}


# cryptography.x509.name._NAMEOID_TO_NAME, the only short names it prints.
_ATTRIBUTE_NAMES = _table(
    {
        "2.5.4.3": "CN",
        "2.5.4.7": "L",
        "2.5.4.8": "ST",
        "2.5.4.10": "O",
        "2.5.4.11": "OU",
        "2.5.4.6": "C",
        "2.5.4.9": "STREET",
        "0.9.2342.19200300.100.1.25": "DC",
        "0.9.2342.19200300.100.1.1": "UID",
    }
)
_COMMON_NAME = _der.encode_oid("2.5.4.3")

# Signature algorithms named in cryptography.hazmat._oid._OID_NAMES.
_SIGNATURE_NAMES = {
    "1.2.840.113549.1.1.4": "md5WithRSAEncryption",
    "1.2.840.113549.1.1.5": "sha1WithRSAEncryption",
    "1.2.840.113549.1.1.14": "sha224WithRSAEncryption",
    "1.2.840.113549.1.1.11": "sha256WithRSAEncryption",
    "1.2.840.113549.1.1.12": "sha384WithRSAEncryption",
    "1.2.840.113549.1.1.13": "sha512WithRSAEncryption",
    "1.2.840.113549.1.1.10": "rsassaPss",
    "1.2.840.10045.4.1": "ecdsa-with-SHA1",
    "1.2.840.10045.4.3.1": "ecdsa-with-SHA224",
    "1.2.840.10045.4.3.2": "ecdsa-with-SHA256",
    "1.2.840.10045.4.3.3": "ecdsa-with-SHA384",
    "1.2.840.10045.4.3.4": "ecdsa-with-SHA512",
    "1.2.840.10040.4.3": "dsa-with-sha1",
    "2.16.840.1.101.3.4.3.1": "dsa-with-sha224",
    "2.16.840.1.101.3.4.3.2": "dsa-with-sha256",
    "1.3.101.112": "ed25519",
    "1.3.101.113": "ed448",
    "2.16.840.1.101.3.4.3.17": "ML-DSA-44",
    "2.16.840.1.101.3.4.3.18": "ML-DSA-65",
    "2.16.840.1.101.3.4.3.19": "ML-DSA-87",
}

# subjectPublicKeyInfo algorithms (RFC 3279, RFC 4055, RFC 8410).
KEY_RSA = _der.encode_oid("1.2.840.113549.1.1.1")
KEY_RSA_PSS = _der.encode_oid("1.2.840.113549.1.1.10")
KEY_EC = _der.encode_oid("1.2.840.10045.2.1")
KEY_DSA = _der.encode_oid("1.2.840.10040.4.1")
ED25519 = _der.encode_oid("1.3.101.112")
ED448 = _der.encode_oid("1.3.101.113")

#: Named curves cryptography knows: encoded OID -> (name, key_size).
CURVES: dict[bytes, tuple[str, int]] = {
    _der.encode_oid(dotted): (name, bits)
    for dotted, name, bits in (
        ("1.2.840.10045.3.1.1", "secp192r1", 192),
        ("1.3.132.0.33", "secp224r1", 224),
        ("1.2.840.10045.3.1.7", "secp256r1", 256),
        ("1.3.132.0.10", "secp256k1", 256),
        ("1.3.132.0.34", "secp384r1", 384),
        ("1.3.132.0.35", "secp521r1", 521),
        ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1", 256),
        ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1", 384),
        ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1", 512),
    )
}


def signature_name(dotted: str) -> str:
    """cryptography's name for a signature OID; the dotted OID when it has none."""
    return _SIGNATURE_NAMES.get(dotted, dotted)


# Universal string types (X.680 41) and how their octets become text.
_UTF8_TYPES = frozenset(
    {
        0x04,  # OCTET STRING: cryptography reads it as UTF-8 text
        0x0C,  # UTF8String
        0x12,  # NumericString
        0x13,  # PrintableString (real certificates carry '_', '@', '&')
        0x15,  # VideotexString
        0x16,  # IA5String
        0x19,  # GraphicString
        0x1A,  # VisibleString
        0x1B,  # GeneralString
    }
)
_T61 = 0x14  # T61String, also known as TeletexString
_WIDE_TYPES = {0x1E: "utf-16-be", 0x1C: "utf-32-be"}  # BMPString, UniversalString

_SPECIAL = re.compile(r'[\\"+,;<>\x00]')
_ESCAPES = {
    "\\": "\\\\",
    '"': '\\"',
    "+": "\\+",
    ",": "\\,",
    ";": "\\;",
    "<": "\\<",
    ">": "\\>",
    "\x00": "\\00",
}


def escape_value(value: str) -> str:
    """Escape an attribute value as cryptography's ``_escape_dn_value`` does."""
    if not value:
        return ""
    if _SPECIAL.search(value):
        value = _SPECIAL.sub(lambda m: _ESCAPES[m.group()], value)
    # RFC 4514 2.4: a leading '#' or space and a trailing space are escaped;
    # cryptography leaves a value of one lone space to the trailing rule.
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def _decode(raw: bytes, tag: int) -> str | None:
    """The attribute value as text, or None when it is not text."""
    try:
        if tag in _UTF8_TYPES:
            return raw.decode("utf-8")
        if tag == _T61:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw.decode("latin-1")
        codec = _WIDE_TYPES.get(tag)
        if codec is not None:
            return raw.decode(codec)
    except UnicodeDecodeError:
        pass
    return None


def parse_name(data: bytes, start: int, end: int) -> tuple[str, str | None]:
    """Render the Name whose contents are ``data[start:end]``.

    Returns the RFC 4514 string and the first commonName value in DER order
    (the one ``get_attributes_for_oid(COMMON_NAME)[0]`` gives), unescaped.
    """
    rdns = []
    first_cn = None
    for tag, set_start, set_end in _der.iter_tlvs(data, start, end):
        if tag != _der.SET:
            raise ParseError(f"Name: expected a SET, found tag 0x{tag:02x}")
        parts = []
        for atv_tag, atv_start, atv_end in _der.iter_tlvs(data, set_start, set_end):
            if atv_tag != _der.SEQUENCE:
                raise ParseError("Name: malformed AttributeTypeAndValue")
            _, oid_start, oid_end = _der.expect(data, atv_start, atv_end, _der.OID, "Name")
            vtag, vstart, vend = _der.read_tlv(data, oid_end, atv_end)
            if vend != atv_end:
                raise ParseError("Name: trailing data in AttributeTypeAndValue")
            oid = data[oid_start:oid_end]
            plain = _decode(data[vstart:vend], vtag)
            if plain is not None:
                text = escape_value(plain)
            elif vtag == _der.BIT_STRING:
                # cryptography's bytes value (x500UniqueIdentifier) is the
                # contents octets, unused-bits octet included.
                text = plain = "#" + data[vstart:vend].hex()
            else:
                text = plain = "#" + data[oid_end:vend].hex()
            if first_cn is None and oid == _COMMON_NAME:
                first_cn = plain
            label = _ATTRIBUTE_NAMES.get(oid)
            if label is None:
                label = _der.decode_oid(oid)
            parts.append(f"{label}={text}")
        if not parts:
            raise ParseError("Name: empty RelativeDistinguishedName")
        rdns.append("+".join(parts))
    rdns.reverse()
    return ",".join(rdns), first_cn
