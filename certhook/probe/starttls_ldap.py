"""LDAP StartTLS (RFC 4511 section 4.14, RFC 4513 section 3): one BER request, one reply.

The client sends an ExtendedRequest naming the StartTLS OID and reads the
ExtendedResponse; resultCode success (0) is the go-ahead. The reply is BER
(RFC 4511 section 5.1): definite lengths only, but in any form, long or
short, minimal or not (Active Directory sends every length as ``0x84`` and
four octets). :mod:`certhook._der` reads it from a partial buffer.
"""

from __future__ import annotations

from certhook import _der
from certhook.errors import ParseError
from certhook.probe.starttls_base import MAX_REPLY_BYTES, Dialogue, ProtocolRow, show

__all__ = ["LdapDialogue"]

# Identifier octets, RFC 4511 section 4.12 and X.690 8.1.2: application
# class 0x40, constructed 0x20, context-specific class 0x80.
_EXTENDED_REQUEST = 0x77  # [APPLICATION 23], constructed
_EXTENDED_RESPONSE = 0x78  # [APPLICATION 24], constructed
_REQUEST_NAME = 0x80  # requestName [0] LDAPOID, primitive
_ENUMERATED = 0x0A  # resultCode ENUMERATED (RFC 4511 section 4.1.9)

# RFC 4511 section 4.1.1: the messageID we use; 0 is reserved for unsolicited
# notifications (section 4.4), such as the Notice of Disconnection.
_MESSAGE_ID = 1

# RFC 4511 section 4.1.9 and appendix A: the result codes a StartTLS reply
# is likely to carry (section 4.14.2 names most of them).
_RESULT_NAMES = {
    0: "success",
    1: "operationsError",
    2: "protocolError",
    10: "referral",
    11: "adminLimitExceeded",
    12: "unavailableCriticalExtension",
    13: "confidentialityRequired",
    50: "insufficientAccessRights",
    51: "busy",
    52: "unavailable",
    53: "unwillingToPerform",
    80: "other",
}


def _tlv(tag: int, value: bytes) -> bytes:
    # Short-form length (X.690 8.1.3.4): our request is far below 128 octets.
    assert len(value) < 0x80
    return bytes([tag, len(value)]) + value


def _parse(buf: bytes, start: int, end: int) -> tuple[int, int, int, bytes]:
    """The messageID, operation tag, resultCode and diagnosticMessage of a reply."""
    # LDAPMessage ::= SEQUENCE { messageID, protocolOp, controls [0] OPTIONAL }
    tag, id_start, id_end = _der.read_tlv(buf, start, end, der=False)
    if tag != _der.INTEGER:
        raise ParseError(f"messageID with tag 0x{tag:02x}")
    message_id = _der.read_int(buf, id_start, id_end)
    op_tag, op_start, op_end = _der.read_tlv(buf, id_end, end, der=False)
    if op_tag != _EXTENDED_RESPONSE:
        return message_id, op_tag, -1, b""
    # ExtendedResponse ::= [APPLICATION 24] SEQUENCE { COMPONENTS OF
    # LDAPResult, responseName [10] OPTIONAL, responseValue [11] OPTIONAL },
    # LDAPResult ::= resultCode ENUMERATED, matchedDN LDAPDN,
    # diagnosticMessage LDAPString, referral [3] OPTIONAL (section 4.1.9).
    _, code_start, code_end = _der.expect(
        buf, op_start, op_end, _ENUMERATED, "resultCode", der=False
    )
    code = _der.read_int(buf, code_start, code_end)
    _, _, dn_end = _der.expect(buf, code_end, op_end, _der.OCTET_STRING, "matchedDN", der=False)
    _, text_start, text_end = _der.expect(
        buf, dn_end, op_end, _der.OCTET_STRING, "diagnosticMessage", der=False
    )
    return message_id, op_tag, code, buf[text_start:text_end]


class LdapDialogue(Dialogue):
    """LDAP: send the StartTLS ExtendedRequest, expect resultCode success.

    From the row: ``command`` is the StartTLS OID (RFC 4511 section 4.14.1),
    ``success`` the resultCode that means go ahead, in decimal.
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._buf = b""

    def initial(self) -> bytes:
        # RFC 4511 section 4.12: ExtendedRequest ::= [APPLICATION 23]
        # SEQUENCE { requestName [0] LDAPOID, requestValue [1] OPTIONAL };
        # StartTLS has no requestValue (section 4.14.1).
        request = _tlv(_EXTENDED_REQUEST, _tlv(_REQUEST_NAME, self.protocol.command))
        message_id = _tlv(_der.INTEGER, bytes([_MESSAGE_ID]))
        return _tlv(_der.SEQUENCE, message_id + request)

    def _feed(self, data: bytes) -> bytes:
        self._buf += data
        try:
            tlv = _der.try_read_tlv(self._buf, 0, der=False, max_length=MAX_REPLY_BYTES)
            if tlv is None:
                return b""
            tag, start, end = tlv
            if tag != _der.SEQUENCE:
                raise ParseError(f"LDAPMessage with tag 0x{tag:02x}")
            message_id, op_tag, code, text = _parse(self._buf, start, end)
        except ParseError as exc:
            self.fail(f"malformed reply: {exc}")
        name = _RESULT_NAMES.get(code, "unknown")
        detail = f"resultCode {code} ({name}), diagnosticMessage {show(text)}"
        if message_id == 0:
            # RFC 4511 section 4.4: an unsolicited notification, in practice
            # the Notice of Disconnection (4.4.1): the server is hanging up.
            self.fail(f"server sent a notice of disconnection: {detail}")
        if message_id != _MESSAGE_ID:
            self.fail(f"reply to messageID {message_id}, we sent {_MESSAGE_ID}")
        if op_tag != _EXTENDED_RESPONSE:
            self.fail(f"reply is not an ExtendedResponse (tag 0x{op_tag:02x})")
        if str(code).encode() not in self.protocol.success:
            self.fail(f"StartTLS refused: {detail}")
        self.go_ahead(len(self._buf) - end)
        return b""
