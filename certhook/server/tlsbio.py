"""Server-side TLS over memory BIOs, sans-IO: raw bytes in, plaintext out, and back.

The line listener terminates TLS itself instead of handing the socket to
asyncio's SSL transport, for two reasons (issue 9.5). asyncio (3.11+)
allocates a 256 KiB buffer for every TLS connection when it is accepted,
before a byte of handshake: 4,500 stalled handshakes took the server to
1.41 GB. And a handshake in progress was invisible to the listener, so it
counted against no limit. Here the connection is the listener's from the
TCP accept on (counted, per address, with a handshake deadline), and the
TLS state is created with the first byte the peer sends.
"""

from __future__ import annotations

import ssl

__all__ = ["TlsSession"]

_READ = 16 * 1024  # one TLS record's worth of plaintext per read


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
        self._tls: ssl.SSLObject | None = None  # created with the first byte
        self.handshaken = False
        self.peer_closed = False  # close_notify received

    def receive(self, data: bytes) -> bytes:
        if self._tls is None:
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
