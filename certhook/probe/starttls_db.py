"""Database protocols that upgrade to TLS: PostgreSQL and MySQL/MariaDB.

Both are binary. PostgreSQL: the client asks with an SSLRequest, the server
answers one byte. MySQL: the server speaks first with its handshake packet,
the client answers with an SSLRequest packet and starts TLS at once, without
waiting for a reply.
"""

from __future__ import annotations

import struct

from certhook.probe.starttls_base import MAX_REPLY_BYTES, Dialogue, ProtocolRow, show

__all__ = ["MYSQL_SSL_REQUEST", "POSTGRES_SSL_REQUEST", "MysqlDialogue", "PostgresDialogue"]

#: PostgreSQL protocol, "Message Formats", SSLRequest: Int32 length 8, then
#: Int32 80877103 (1234 in the high 16 bits, 5679 in the low ones);
#: "Message Flow", SSL Session Encryption: the server answers "S" or "N".
POSTGRES_SSL_REQUEST = struct.pack("!ii", 8, 80877103)

# MySQL client/server protocol, "Capabilities Flags".
_CLIENT_LONG_PASSWORD = 0x00000001
_CLIENT_PROTOCOL_41 = 0x00000200
_CLIENT_SSL = 0x00000800
_CLIENT_SECURE_CONNECTION = 0x00008000
# "Character Set": 33 is utf8_general_ci, understood by every server version.
_CHARSET_UTF8 = 33
_MAX_PACKET = 16 * 1024 * 1024

#: MySQL "ProtocolRow::SSLRequest": capability flags (int<4>), max packet size
#: (int<4>), character set (int<1>), 23 zero bytes, all little-endian; in a
#: packet of 3-byte length and sequence id 1, the answer to the server's
#: handshake (sequence id 0).
MYSQL_SSL_REQUEST = struct.pack("<I", 32)[:3] + b"\x01" + struct.pack(
    "<IIB23x",
    _CLIENT_LONG_PASSWORD | _CLIENT_PROTOCOL_41 | _CLIENT_SSL | _CLIENT_SECURE_CONNECTION,
    _MAX_PACKET,
    _CHARSET_UTF8,
)


class PostgresDialogue(Dialogue):
    """PostgreSQL: SSLRequest, then exactly one byte, ``S`` to go ahead.

    Anything after that byte, before the TLS handshake, is injection (the
    libpq fix of CVE-2021-23222 refuses it the same way).
    """

    def _feed(self, data: bytes) -> bytes:
        answer, rest = data[:1], data[1:]
        if answer in self.protocol.success:
            self.go_ahead(len(rest))
        elif answer == b"N":
            self.fail("server does not support SSL")
        elif answer == b"E":
            # "SSL Session Encryption": only a server too old to know the
            # SSLRequest answers with an ErrorResponse.
            self.fail(f"server answered with an error (too old for SSL?): {show(rest)}")
        else:
            self.fail(f"unexpected answer to the SSLRequest: {show(data)}")
        return b""


class MysqlDialogue(Dialogue):
    """MySQL/MariaDB: read the HandshakeV10 packet, check CLIENT_SSL, send SSLRequest."""

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._buf = b""

    def _feed(self, data: bytes) -> bytes:
        self._buf += data
        # "MySQL Packets": int<3> payload length, int<1> sequence id.
        if len(self._buf) < 4:
            return b""
        length = int.from_bytes(self._buf[:3], "little")
        if length > MAX_REPLY_BYTES:
            self.fail(f"handshake packet of {length} bytes")
        if len(self._buf) < 4 + length:
            return b""
        if self._buf[3] != 0:
            self.fail(f"handshake packet with sequence id {self._buf[3]}")
        payload, rest = self._buf[4 : 4 + length], self._buf[4 + length :]
        flags = self._handshake(payload)
        if not flags & _CLIENT_SSL:
            self.fail("server does not support SSL (no CLIENT_SSL in its handshake)")
        if not flags & _CLIENT_PROTOCOL_41:
            self.fail("server too old: no CLIENT_PROTOCOL_41 in its handshake")
        self.go_ahead(len(rest))
        return self.protocol.command

    def _handshake(self, payload: bytes) -> int:
        """The server's capability flags, from "ProtocolRow::HandshakeV10"."""
        if payload[:1] == b"\xff":
            # "ERR_Packet": 0xFF, int<2> error code, then the message (no
            # SQL state before the capabilities are agreed).
            code = int.from_bytes(payload[1:3], "little")
            self.fail(f"server refused the connection: error {code} {show(payload[3:])}")
        if payload[:1] not in self.protocol.greeting:
            self.fail(f"unsupported protocol version {show(payload[:1])}")
        # int<1> protocol version 10, string<NUL> server version, int<4>
        # connection id, string[8] auth-plugin-data-part-1, int<1> filler,
        # int<2> capability flags (lower 2 bytes); then optionally int<1>
        # character set, int<2> status flags, int<2> capability flags (upper).
        end = payload.find(b"\0", 1)
        if end < 0 or len(payload) < end + 1 + 4 + 8 + 1 + 2:
            self.fail(f"truncated handshake packet {show(payload)}")
        pos = end + 1 + 4 + 8 + 1
        flags = int.from_bytes(payload[pos : pos + 2], "little")
        if len(payload) >= pos + 7:
            flags |= int.from_bytes(payload[pos + 5 : pos + 7], "little") << 16
        return flags
