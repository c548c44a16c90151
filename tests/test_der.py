"""certhook._der: the TLV reader shared by x509 (DER) and the LDAP dialogue (BER)."""

from __future__ import annotations

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from certhook import _der
from certhook.errors import ParseError

# LDAP StartTLS ExtendedResponse, success (RFC 4511 4.12, 4.14.2): as
# OpenLDAP sends it (minimal lengths) and as Active Directory does (every
# length in four octets, which BER allows and DER forbids).
OPENLDAP = bytes.fromhex("300c 020101 7807 0a0100 0400 0400")
_OP = bytes.fromhex("0a0100 0400 0400 8a16") + b"1.3.6.1.4.1.1466.20037"
_BODY = bytes.fromhex("020101 7884") + len(_OP).to_bytes(4, "big") + _OP
AD = bytes.fromhex("3084") + len(_BODY).to_bytes(4, "big") + _BODY


@pytest.mark.parametrize("message", [OPENLDAP, AD])
def test_ldap_reply_whole_bytewise_and_with_trailing_data(message: bytes) -> None:
    tag, start, end = _der.read_tlv(message, der=False)
    assert (tag, end) == (0x30, len(message))
    msg_id, op = list(_der.iter_tlvs(message, start, end, der=False))
    assert _der.read_int(message, msg_id[1], msg_id[2]) == 1
    assert op[0] == 0x78  # [APPLICATION 24] ExtendedResponse
    result = _der.read_tlv(message, op[1], op[2], der=False)
    assert (result[0], message[result[1]]) == (0x0A, 0)  # resultCode success
    # A byte at a time: "need more" until the last byte, never an error.
    for size in range(len(message)):
        assert _der.try_read_tlv(message[:size]) is None
    assert _der.try_read_tlv(message) == (tag, start, end)
    # Two replies in one read: the first ends where the second starts.
    assert _der.try_read_tlv(message + message) == (tag, start, end)
    assert _der.try_read_tlv(message + message, end) == (tag, start + end, 2 * end)


def test_der_mode_rejects_what_ber_allows() -> None:
    with pytest.raises(ParseError, match="non-minimal length"):
        _der.read_tlv(AD)
    with pytest.raises(ParseError, match="non-minimal length"):
        _der.try_read_tlv(AD, der=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x30\x80\x00\x00", "indefinite length"),
        (b"\x1f\x01\x00", "long-form tag"),
        (b"\xff\x01\x00", "long-form tag"),
        (b"\x04\x85\x00\x00\x00\x00\x01\x00", "length of 5 octets"),
        (b"\x04\xff", "length of 127 octets"),
    ],
)
def test_malformed_in_both_modes(data: bytes, message: str) -> None:
    for der in (True, False):
        with pytest.raises(ParseError, match=message):
            _der.try_read_tlv(data, der=der)
        with pytest.raises(ParseError, match=message):
            _der.read_tlv(data, der=der)


def test_incomplete_is_distinct_from_malformed() -> None:
    assert _der.try_read_tlv(b"") is None
    assert _der.try_read_tlv(b"\x30") is None
    assert _der.try_read_tlv(b"\x30\x84\x00\x00") is None  # length octets cut short
    assert _der.try_read_tlv(b"\x30\x84\xff\xff\xff\xff") is None  # 4 GiB announced
    with pytest.raises(ParseError, match="exceeds 65536"):
        _der.try_read_tlv(b"\x30\x84\xff\xff\xff\xff", max_length=65536)
    assert _der.try_read_tlv(b"\x30\x03\x01", max_length=3) is None
    for data in (b"", b"\x30", b"\x30\x84\x00\x00", b"\x30\x03\x01"):
        with pytest.raises(ParseError, match="truncated"):
            _der.read_tlv(data)


def test_read_tlv_respects_the_enclosing_end() -> None:
    data = b"\x30\x04\x04\x03abc"  # the inner value overruns its SEQUENCE
    with pytest.raises(ParseError, match="truncated value at offset 2"):
        list(_der.iter_tlvs(data, 2, 6))
    with pytest.raises(ParseError, match="expected tag 0x02, found 0x04"):
        _der.expect(b"\x04\x00", 0, 2, _der.INTEGER, "serial")


@pytest.mark.parametrize(
    ("content", "value"),
    [(b"\x00", 0), (b"\x7f", 127), (b"\x00\x80", 128), (b"\x80", -128), (b"\xff\x7f", -129)],
)
def test_read_int(content: bytes, value: int) -> None:
    assert _der.read_int(content, 0, len(content)) == value


@pytest.mark.parametrize(
    "raw", [b"", b"\x2a\x86", b"\x2a\x80\x01", b"\x80\x01", b"\x2a" + b"\x81" * 19 + b"\x01"]
)
def test_decode_oid_rejects(raw: bytes) -> None:
    with pytest.raises(ParseError, match="OBJECT IDENTIFIER"):
        _der.decode_oid(raw)


@given(
    st.sampled_from([0, 1, 2]).flatmap(
        lambda first: st.tuples(
            st.just(first),
            st.integers(0, 39 if first < 2 else 2**40),
            st.lists(st.integers(0, 2**70), max_size=6),
        )
    )
)
def test_oid_roundtrip_against_cryptography(arcs: tuple[int, int, list[int]]) -> None:
    dotted = ".".join(str(arc) for arc in [arcs[0], arcs[1], *arcs[2]])
    encoded = x509.Name([x509.NameAttribute(x509.ObjectIdentifier(dotted), "v")]).public_bytes()
    raw = _der.encode_oid(dotted)
    assert bytes([6, len(raw)]) + raw in encoded
    assert _der.decode_oid(raw) == dotted


@given(st.binary(max_size=64), st.booleans())
def test_random_input(data: bytes, der: bool) -> None:
    # A value inside the buffer, None, or ParseError; and prefixes agree.
    try:
        tlv = _der.try_read_tlv(data, der=der)
    except ParseError:
        return
    if tlv is None:
        with pytest.raises(ParseError):
            _der.read_tlv(data, der=der)
        return
    _, start, end = tlv
    assert 2 <= start <= end <= len(data)
    assert _der.read_tlv(data, der=der) == tlv
    for size in range(end):
        assert _der.try_read_tlv(data[:size], der=der) is None
