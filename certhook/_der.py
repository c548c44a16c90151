"""A small reader for ASN.1 DER and definite-length BER (X.690).

It reads one tag-length-value at a time and hands back offsets into the
caller's buffer, so nothing is copied until a value is actually decoded.
Two users: :mod:`certhook.x509` (DER certificates, a complete buffer) and the
LDAP StartTLS dialogue (BER from a socket, possibly partial).

Supported: single-byte identifiers (tag numbers 0-30, every class), definite
lengths in short and long form. Rejected as malformed: long-form tag numbers
(never needed by X.509 or LDAP), the indefinite length (forbidden by DER,
X.690 10.1, and by LDAP, RFC 4511 section 5.1), the reserved length octet
0xFF, and any length that runs past the end of its enclosing value.

Invariant: every function here returns a value or raises
:class:`~certhook.errors.ParseError`; none raises ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone

from certhook.errors import ParseError

__all__ = [
    "BIT_STRING",
    "BOOLEAN",
    "ENUMERATED",
    "GENERALIZED_TIME",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "OID",
    "SEQUENCE",
    "SET",
    "UTC_TIME",
    "Tlv",
    "decode_oid",
    "encode_oid",
    "expect",
    "iter_tlvs",
    "read_header",
    "read_int",
    "read_time",
    "read_tlv",
    "try_read_tlv",
]

# Identifier octets (X.690 8.1.2) of the universal types certhook reads.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
ENUMERATED = 0x0A
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31

#: ``(tag, value_start, value_end)``: the identifier octet and the slice of
#: the buffer holding the contents.
Tlv = tuple[int, int, int]

# Lengths of more than 4 octets would describe values beyond 4 GiB: nothing
# certhook reads can be that large. (A streaming reader should bound lengths
# far lower still: see try_read_tlv's max_length.)
_MAX_LENGTH_OCTETS = 4
# An OID arc of more than 19 octets (133 bits) exists nowhere; refusing it
# bounds the work per arc and keeps str() clear of Python's limit on the
# digits of an int (3.11+, "Exceeds the limit (4300 digits)": a ValueError).
_MAX_ARC_OCTETS = 19


def read_header(data: bytes, offset: int, end: int, *, der: bool = True) -> Tlv | None:
    """Read the identifier and length octets at ``data[offset:end]``.

    Returns ``(tag, value_start, value_end)``, or ``None`` when the header
    itself is cut short (more bytes are needed to know the length). The value
    is *not* checked against ``end``: :func:`read_tlv` and
    :func:`try_read_tlv` do that, each in its own way. With ``der`` true a
    length in long form where the short form fits, or with a leading zero
    octet, is malformed (X.690 10.1); BER allows it (Active Directory sends
    every LDAP length as ``0x84`` plus four octets).
    """
    if end - offset < 2:
        return None
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise ParseError(f"unsupported long-form tag at offset {offset}")
    first = data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    if first == 0x80:
        raise ParseError(f"indefinite length at offset {offset}")
    count = first & 0x7F
    if count > _MAX_LENGTH_OCTETS:
        raise ParseError(f"length of {count} octets at offset {offset}")
    start = offset + 2 + count
    if start > end:
        return None
    length = int.from_bytes(data[offset + 2 : start], "big")
    if der and (length < 0x80 or data[offset + 2] == 0):
        raise ParseError(f"non-minimal length at offset {offset}")
    return tag, start, start + length


def read_tlv(data: bytes, offset: int = 0, end: int | None = None, *, der: bool = True) -> Tlv:
    """Read one complete TLV from a buffer that is known to be whole.

    Truncation is malformed here: a header or a value running past ``end``
    (default: the end of ``data``) raises :class:`ParseError`.
    """
    if end is None:
        end = len(data)
    tlv = read_header(data, offset, end, der=der)
    if tlv is None or tlv[2] > end:
        raise ParseError(f"truncated value at offset {offset}")
    return tlv


def try_read_tlv(
    data: bytes, offset: int = 0, *, der: bool = False, max_length: int | None = None
) -> Tlv | None:
    """Read one TLV from a stream buffer that may hold only part of it.

    Returns ``None`` when more bytes are needed, distinct from malformed
    input, which raises :class:`ParseError`. ``max_length`` bounds the value
    length a peer may announce, so a hostile length fails at once instead of
    making the caller buffer without end. BER by default (``der=False``).
    """
    tlv = read_header(data, offset, len(data), der=der)
    if tlv is None:
        return None
    if max_length is not None and tlv[2] - tlv[1] > max_length:
        raise ParseError(f"value of {tlv[2] - tlv[1]} bytes exceeds {max_length}")
    if tlv[2] > len(data):
        return None
    return tlv


def expect(data: bytes, offset: int, end: int, tag: int, what: str, *, der: bool = True) -> Tlv:
    """Like :func:`read_tlv`, and the identifier octet must be ``tag``."""
    tlv = read_tlv(data, offset, end, der=der)
    if tlv[0] != tag:
        raise ParseError(f"{what}: expected tag 0x{tag:02x}, found 0x{tlv[0]:02x}")
    return tlv


def iter_tlvs(data: bytes, start: int, end: int, *, der: bool = True) -> Iterator[Tlv]:
    """Yield the TLVs that exactly fill ``data[start:end]`` (a constructed value)."""
    while start < end:
        tlv = read_tlv(data, start, end, der=der)
        yield tlv
        start = tlv[2]


def read_int(data: bytes, start: int, end: int) -> int:
    """Decode the contents of an INTEGER (two's complement, X.690 8.3).

    The size is the caller's to bound: Python 3.11+ cannot ``str()`` an int
    of more than 4300 digits (about 1.7 KiB of contents).
    """
    if start >= end:
        raise ParseError("empty INTEGER")
    return int.from_bytes(data[start:end], "big", signed=True)


def read_time(data: bytes, tlv: Tlv) -> datetime:
    """Decode a Time (a certificate's validity, a CRL's updates) to an aware datetime.

    RFC 5280 4.1.2.5 and 5.1.2.4: UTCTime ``YYMMDDHHMMSSZ`` (YY >= 50 is
    19YY) or GeneralizedTime ``YYYYMMDDHHMMSSZ``, always with seconds and Z.
    """
    tag, start, end = tlv
    raw = data[start:end]
    if tag == UTC_TIME and len(raw) == 13 and raw[12] == 0x5A and raw[:12].isdigit():
        year = int(raw[:2])
        year += 1900 if year >= 50 else 2000
        rest = raw[2:12]
    elif tag == GENERALIZED_TIME and len(raw) == 15 and raw[14] == 0x5A and raw[:14].isdigit():
        year = int(raw[:4])
        rest = raw[4:14]
    else:
        raise ParseError(f"malformed time (tag 0x{tag:02x}, {raw[:20]!r})")
    try:
        return datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]),
                        int(rest[8:10]), tzinfo=timezone.utc)
    except ValueError:
        raise ParseError(f"impossible date {raw.decode('ascii')}") from None


def decode_oid(raw: bytes) -> str:
    """Decode the contents of an OBJECT IDENTIFIER to dotted text (X.690 8.19)."""
    if not raw or raw[-1] & 0x80:
        raise ParseError("malformed OBJECT IDENTIFIER")
    arcs = []
    value = 0
    size = 0
    for byte in raw:
        if size == 0 and byte == 0x80:
            # A leading 0x80 pads a subidentifier: forbidden (X.690 8.19.2).
            raise ParseError("malformed OBJECT IDENTIFIER")
        value = (value << 7) | (byte & 0x7F)
        size += 1
        if size > _MAX_ARC_OCTETS:
            raise ParseError("OBJECT IDENTIFIER arc too large")
        if not byte & 0x80:
            arcs.append(value)
            value = size = 0
    first = arcs[0]
    # The first subidentifier packs two arcs: 40 * X + Y, X in 0..2 (8.19.4).
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(arc) for arc in head + arcs[1:])


def encode_oid(dotted: str) -> bytes:
    """Encode dotted text to the contents of an OBJECT IDENTIFIER (for tables)."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)
