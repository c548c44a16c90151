"""EC keys with explicit curve parameters: which named curve they spell out.

RFC 5480 section 2.1.1 allows only a named curve (an OID) in a PKIX
certificate, but an old or hand-made key may carry the curve itself
(``specifiedCurve``, SEC 1 section C.2). cryptography then has no curve
name and no ``key_size``; certhook compares the parameters with the named
curves' and, when they are one, reports it by name and size. Only the
prime-field curves the CA/Browser Forum allows are listed.
"""

from __future__ import annotations

from certhook import _der
from certhook.errors import ParseError

__all__ = ["explicit_curve"]

# (name, p, a, b, x(G), y(G), n): the domain parameters of FIPS 186-4
# appendix D.1.2 (SEC 2 sections 2.4.2, 2.5.1, 2.6.1), in hex.
_CURVES = (
    ("secp256r1",
     "ffffffff00000001000000000000000000000000ffffffffffffffffffffffff",
     "ffffffff00000001000000000000000000000000fffffffffffffffffffffffc",
     "5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b",
     "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
     "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5",
     "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"),
    ("secp384r1",
     "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
     "ffffffff0000000000000000ffffffff",
     "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe"
     "ffffffff0000000000000000fffffffc",
     "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875a"
     "c656398d8a2ed19d2a85c8edd3ec2aef",
     "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a38"
     "5502f25dbf55296c3a545e3872760ab7",
     "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c0"
     "0a60b1ce1d7e819d7a431d7c90ea0e5f",
     "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf"
     "581a0db248b0a77aecec196accc52973"),
    ("secp521r1",
     "1" + "f" * 130,
     "1" + "f" * 129 + "c",
     "51953eb9618e1c9a1f929a21a0b68540eea2da725b99b315f3b8b489918ef109"
     "e156193951ec7e937b1652c0bd3bb1bf073573df883d2c34f1ef451fd46b503f00",
     "c6858e06b70404e9cd9e3ecb662395b4429c648139053fb521f828af606b4d3d"
     "baa14b5e77efe75928fe1dc127a2ffa8de3348b3c1856a429bf97e7e31c2e5bd66",
     "11839296a789a3bc0045c8a5fb42c7d1bd998f54449579b446817afbd17273e6"
     "62c97ee72995ef42640c550b9013fad0761353c7086a272c24088be94769fd16650",
     "1fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa"
     "51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409"),
)
_KNOWN = {
    tuple(int(value, 16) for value in row[1:]): (row[0], int(row[1], 16).bit_length())
    for row in _CURVES
}
# FieldID.fieldType for a prime field (X9.62, RFC 3279 section 2.3.5).
_PRIME_FIELD = _der.encode_oid("1.2.840.10045.1.1")


def _int(der: bytes, tlv: _der.Tlv) -> int:
    return int.from_bytes(der[tlv[1]:tlv[2]], "big")


def explicit_curve(der: bytes, start: int, end: int) -> tuple[str | None, int]:
    """The named curve (or None) and the field size in bits of ``ECParameters``.

    ``der[start:end]`` is the SEQUENCE's contents: ``version``, ``fieldID``,
    ``curve`` (``a``, ``b``, optional ``seed``), ``base`` (the point G,
    compressed or not), ``order``, optional ``cofactor``. A binary-field
    curve gives ``(None, 0)``; a malformed one raises :class:`ParseError`.
    """
    items = list(_der.iter_tlvs(der, start, end))
    if len(items) < 5 or [tlv[0] for tlv in items[:5]] != [
            _der.INTEGER, _der.SEQUENCE, _der.SEQUENCE, _der.OCTET_STRING, _der.INTEGER]:
        raise ParseError("EC key: malformed explicit curve parameters")
    _, field, curve, base, order = items[:5]
    field_items = list(_der.iter_tlvs(der, field[1], field[2]))
    if len(field_items) != 2 or field_items[0][0] != _der.OID:
        raise ParseError("EC key: malformed fieldID")
    if der[field_items[0][1]:field_items[0][2]] != _PRIME_FIELD:
        return None, 0  # characteristic-two: none of the allowed curves
    if field_items[1][0] != _der.INTEGER:
        raise ParseError("EC key: malformed prime")
    p = _int(der, field_items[1])
    curve_items = list(_der.iter_tlvs(der, curve[1], curve[2]))
    if len(curve_items) < 2 or any(tlv[0] != _der.OCTET_STRING for tlv in curve_items[:2]):
        raise ParseError("EC key: malformed curve")
    a, b = _int(der, curve_items[0]), _int(der, curve_items[1])
    point = der[base[1]:base[2]]
    size = (p.bit_length() + 7) // 8
    n = _int(der, order)
    for (kp, ka, kb, gx, gy, kn), (name, bits) in _KNOWN.items():
        if (kp, ka, kb, kn) != (p, a, b, n) or not point:
            continue
        x = int.from_bytes(point[1:1 + size], "big")
        # SEC 1 section 2.3.3: 04 || x || y, or 02/03 || x with y's parity.
        if point[0] == 4 and len(point) == 1 + 2 * size:
            same = (x, int.from_bytes(point[1 + size:], "big")) == (gx, gy)
        elif point[0] in (2, 3) and len(point) == 1 + size:
            same = x == gx and point[0] & 1 == gy & 1
        else:
            same = False
        if same:
            return name, bits
    return None, p.bit_length()
