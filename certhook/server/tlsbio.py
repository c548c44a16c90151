"""Server-side TLS over memory BIOs, sans-IO: raw bytes in, plaintext out, and back.

The line listener terminates TLS itself instead of handing the socket to
asyncio's SSL transport, for two reasons (issue 9.5). asyncio (3.11+)
allocates a 256 KiB buffer for every TLS connection when it is accepted,
before a byte of handshake: 4,500 stalled handshakes took the server to
1.41 GB. And a handshake in progress was invisible to the listener, so it
counted against no limit. Here the connection is the listener's from the
TCP accept on (counted, per address, with a handshake deadline), and the
TLS state (about 46 KiB in OpenSSL) is created only once the peer's first
record, its ClientHello, is complete: a peer that sends nothing, or half a
hello, costs the bytes it sent.
"""

from __future__ import annotations

import ssl

__all__ = ["TlsSession"]

_READ = 16 * 1024  # one TLS record's worth of plaintext per read
# RFC 8446 section 5.1: a record is type (22 = handshake), legacy version
# (3, x), a 2-byte length of at most 2^14 (plaintext, as the hello is).
_HANDSHAKE = 22
_MAX_RECORD = 2 ** 14


class TlsSession:
    """One server-side TLS session; every method returns at once.

    :meth:`receive` takes bytes from the network and returns the plaintext
    they completed (``b""`` while the handshake runs), :meth:`send` takes
    plaintext, and :meth:`outgoing` returns what must go to the network next
    (handshake messages, alerts, records, close_notify). ``ssl.SSLError``
    from :meth:`receive` means the peer is not speaking TLS we accept; what
    :meth:`outgoing` holds then is the alert to send before closing.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._tls: ssl.SSLObject | None = None  # created with the first whole record
        self._first = b""  # the first record, until it is whole
        self.handshaken = False
        self.peer_closed = False  # close_notify received

    @property
    def started(self) -> bool:
        """The handshake is under way: OpenSSL's state is allocated."""
        return self._tls is not None

    def receive(self, data: bytes) -> bytes:
        if self._tls is None:
            self._first += data
            if not self._first_record_whole():
                return b""
            data, self._first = self._first, b""
            self._tls = self._context.wrap_bio(self._in, self._out, server_side=True)
        self._in.write(data)
        if not self.handshaken:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.handshaken = True
        chunks = []
        while not self.peer_closed:
            try:
                chunk = self._tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:
                self.peer_closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _first_record_whole(self) -> bool:
        first = self._first
        if first[:1] not in (b"", bytes([_HANDSHAKE])) or first[1:2] not in (b"", b"\x03"):
            raise ssl.SSLError("not a TLS handshake record")
        if len(first) < 5:
            return False
        length = int.from_bytes(first[3:5], "big")
        if length > _MAX_RECORD:
            raise ssl.SSLError(f"first TLS record of {length} bytes")
        return len(first) >= 5 + length

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` (only once :attr:`handshaken`)."""
        assert self._tls is not None and self.handshaken
        self._tls.write(data)

    def outgoing(self) -> bytes:
        return self._out.read()

    def close(self) -> None:
        """Queue our close_notify (if a session was established)."""
        if self._tls is not None and self.handshaken:
            try:
                self._tls.unwrap()
            except (ssl.SSLError, ValueError):
                pass  # the peer's close_notify is not awaited
