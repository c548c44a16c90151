"""The line-protocol listeners, plain and TLS, on one asyncio event loop.

This is the thin I/O layer around ``certhook.protocol``: bytes go into a
:class:`~certhook.protocol.LineBuffer`, lines into ``parse_request``, and
requests to the group committer; responses come back, in request order,
once their submission is on disk. Nothing here blocks: thousands of idle
connections cost one small object each, a client that stops reading gets
its reading paused, a line over the limit is answered and skipped, and a
connection idle (or stuck in the middle of a line) for ``idle_timeout``
seconds is closed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import threading
import time
from typing import Any

from certhook.errors import ParseError
from certhook.protocol import MAX_LINE, LineBuffer, Response, parse_request
from certhook.server.committer import Committer, Job
from certhook.server.slots import ConnectionSlots, address_key
from certhook.server.throttle import Throttle, message
from certhook.server.tlsbio import TlsSession

__all__ = ["LineServer"]

log = logging.getLogger("certhook.server")

_PONG = b"ok pong\r\n"
_OVER = Response.error("syntax", f"line over {MAX_LINE} bytes").encode()
_EVICTED = Response.error("limit", "server full: closing this idle connection").encode()
_TOO_MANY_BAD = Response.error("limit", "too many bad lines; closing the connection").encode()
MAX_BAD_LINES = 10  # per connection: a client that sends more is not speaking the protocol
_READ = 16 * 1024  # bytes read at a time: bounds the answers one read can produce
_WRITE_HIGH = 16 * 1024  # answers buffered for a peer before we stop reading it
_LINGER = 2.0  # seconds a closing connection's leftovers are read and dropped
_LINGER_BYTES = 64 * 1024  # and at most this many bytes of them
_NOKEY = Response.error("auth", "missing API key").encode()


class _Slot:
    """One response position in a connection's pipeline."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | None = None) -> None:
        self.data = data


class _AsyncSink:
    """Delivers a batch of finished jobs to the event loop with one wake-up."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.get_ident()  # created in the loop's thread

    def deliver(self, jobs: list[Job]) -> None:
        if threading.get_ident() == self._thread:
            self._complete(jobs)  # called from the loop's own thread
        else:
            self._loop.call_soon_threadsafe(self._complete, jobs)

    @staticmethod
    def _complete(jobs: list[Job]) -> None:
        touched = set()
        for job in jobs:
            conn, slot = job.token
            response = job.response or Response.error("internal", "no response")
            conn._server.throttle.done(conn.address, job.request.apikey or "",
                                       response.code != "auth")
            if response.ok and job.request.verb == "ping":
                slot.data = _PONG
            else:
                slot.data = response.encode()
            touched.add(conn)
        for conn in touched:
            conn.flush()


class _Connection(asyncio.BufferedProtocol):
    def __init__(self, server: LineServer, transport_name: str,
                 tls: ssl.SSLContext | None) -> None:
        self._server = server
        self._name = transport_name
        self._transport: asyncio.Transport | None = None
        self._tls = TlsSession(tls) if tls is not None else None
        self._buffer = LineBuffer()
        self._slots: collections.deque[_Slot] = collections.deque()
        self._pending = 0
        self._paused_for_writing = False
        self._eof = False  # answer what is asked, then close
        self._peer_eof = False
        self._errors = 0
        self.draining_until: float | None = None  # closing: our side shut, reading to EOF
        self._drained = 0
        self.peer = "?"
        self.address = ""  # the per-address key: an IPv4 address or an IPv6 /64
        self.last_activity = time.monotonic()
        self.line_started: float | None = None
        self.handshake_deadline: float | None = None

    @property
    def idle(self) -> bool:
        """Nothing asked and unanswered: may be closed without losing an answer
        (half a line, or a handshake in progress, is not yet anything asked)."""
        return not self._slots and self.draining_until is None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peername: Any = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self.address = address_key(str(peername[0]))
            self.peer = f"{peername[0]}:{peername[1]}"
        refusal = self._server.admit(self)
        if refusal is not None:
            self._transport = None
            if self._tls is None:  # TLS: no handshake is spent on a refusal
                transport.write(refusal)
            transport.close()
            return
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        if self._tls is not None:
            self.handshake_deadline = self.last_activity + min(
                self._server.handshake_timeout, self._server.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.forget(self)
        self._transport = None

    def get_buffer(self, sizehint: int) -> memoryview:
        # One buffer for every connection: each read is handled before the next.
        return self._server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        if self._transport is None:
            return
        self.last_activity = time.monotonic()
        if self.draining_until is not None:
            # Closing: what the peer still sends is read and dropped, up to a
            # point; a peer that goes on sending gets its reset after all.
            self._drained += nbytes
            if self._drained > _LINGER_BYTES:
                self.close()
            return
        data = bytes(self._server.read_buffer[:nbytes])
        if self._tls is not None:
            plain = self._receive_tls(data)
            if plain is None:
                return
            data = plain
        for line in self._buffer.feed(data):
            if self._eof:
                break  # over the error budget: the rest is not read
            self._handle(line)
        if not self._buffer.pending:
            self.line_started = None
        elif self.line_started is None:
            self.line_started = self.last_activity
        self.flush()

    def _receive_tls(self, data: bytes) -> bytes | None:
        """The plaintext in ``data``; None if the TLS session failed (then closed)."""
        tls, transport = self._tls, self._transport
        assert tls is not None and transport is not None
        started = tls.started
        try:
            plain = tls.receive(data)
        except ssl.SSLError as exc:
            log.debug("%s: TLS failed: %s", self.peer, exc)
            transport.write(tls.outgoing())  # the alert
            transport.close()
            return None
        if tls.handshaken:
            self.handshake_deadline = None
            self._server.handshake_done(self)
        elif tls.started and not started:
            self._server.handshake_begun(self)
        out = tls.outgoing()
        if out:
            transport.write(out)
        if tls.peer_closed:
            self._eof = True
        return plain

    def eof_received(self) -> bool:
        # Answer what was asked before the client's half-close, then close.
        self._eof = self._peer_eof = True
        if self.draining_until is not None:
            self.close()
            return False
        self.flush()
        return True

    def pause_writing(self) -> None:
        self._paused_for_writing = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._paused_for_writing = False
        self._update_reading()

    # requests and responses
    def _handle(self, line: bytes | None) -> None:
        self._server.requests += 1
        if line is None:
            self._bad(_OVER)
            return
        try:
            request = parse_request(line, self.peer)
        except ParseError as exc:
            self._bad(Response.error("syntax", exc.reason).encode())
            return
        if request.apikey is None:
            self._slots.append(_Slot(_PONG if request.verb == "ping" else _NOKEY))
            return
        wait = self._server.throttle.check(self.address, None, request.apikey)
        if wait:  # too many failed key checks from this address: docs/server.md
            self._slots.append(_Slot(Response.error("limit", message(wait)).encode()))
            return
        sink = self._server.sink
        assert sink is not None
        slot = _Slot()
        self._slots.append(slot)
        self._pending += 1
        self._server.committer.submit(
            Job(request, self._name, self.peer, sink, (self, slot))
        )

    def _bad(self, answer: bytes) -> None:
        """A line that is no request: answered, and counted against the error budget.

        Blank lines and junk cost the sender one error each, never more
        bytes back than a few lines (issue 9.2: each blank line got 69).
        """
        self._errors += 1
        if self._errors > MAX_BAD_LINES:
            self._slots.append(_Slot(_TOO_MANY_BAD))
            self._eof = True
            self._server.bad_closed += 1
            log.debug("%s: over %d bad lines, closing", self.peer, MAX_BAD_LINES)
        else:
            self._slots.append(_Slot(answer))

    def _write(self, data: bytes) -> None:
        transport = self._transport
        assert transport is not None
        if self._tls is not None:
            self._tls.send(data)
            data = self._tls.outgoing()
        transport.write(data)

    def flush(self) -> None:
        transport = self._transport
        if transport is None or self.draining_until is not None:
            return
        out = []
        while self._slots and self._slots[0].data is not None:
            data = self._slots.popleft().data
            assert data is not None
            out.append(data)
        if out:
            self._pending = sum(1 for s in self._slots if s.data is None)
            self._write(b"".join(out))
            self.last_activity = time.monotonic()
        self._update_reading()
        if self._eof and not self._slots:
            self._shut()

    def _shut(self) -> None:
        """Everything answered: close our side, then read the peer's leftovers
        for a moment, so that closing over unread input (a TCP reset) does not
        destroy the answers on their way (the last one says why we close)."""
        transport = self._transport
        assert transport is not None
        if self._tls is not None:
            self._tls.close()
            transport.write(self._tls.outgoing())
        if self._peer_eof or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.draining_until = time.monotonic() + _LINGER
        if not transport.is_reading():
            transport.resume_reading()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing() or self.draining_until is not None:
            return
        paused = (self._pending >= self._server.max_pending or self._paused_for_writing
                  or self._eof)
        if paused:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading():
            transport.resume_reading()

    def evict(self) -> None:
        """Closed to make room for another address (we hold nothing of its)."""
        if self._transport is not None:
            if self._tls is None or self._tls.handshaken:
                self._write(_EVICTED)
            self._transport.close()
            self._transport = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class LineServer(ConnectionSlots["_Connection"]):
    """The line listeners; create inside the running loop with :meth:`start`.

    Connections are counted from the TCP accept on, TLS handshakes in
    progress included; who gets a slot is :class:`ConnectionSlots`' rule.
    """

    def __init__(
        self,
        committer: Committer,
        idle_timeout: float = 60.0,
        max_connections: int = 4096,
        max_per_address: int = 32,
        max_pending: int = 64,
        handshake_timeout: float = 10.0,
    ) -> None:
        super().__init__(max_connections, max_per_address)
        self.committer = committer
        self.idle_timeout = idle_timeout
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.throttle = Throttle()  # failed key checks; shared with HTTP by AuditServer
        self.read_buffer = memoryview(bytearray(_READ))
        self.requests = 0
        self.bad_closed = 0
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.sink: _AsyncSink | None = None
        self.addresses: list[tuple[str, tuple[str, int]]] = []

    async def start(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> tuple[str, int]:
        """Listen on host:port (TLS with a context); returns the bound address."""
        loop = asyncio.get_running_loop()
        if self.sink is None:
            self.sink = _AsyncSink(loop)
            self._sweeper = loop.create_task(self._sweep())
        name = "tls" if ssl_context else "line"
        # TLS is terminated by each connection (tlsbio.py), not by asyncio.
        server = await loop.create_server(
            lambda: _Connection(self, name, ssl_context), host, port,
            backlog=4096, reuse_address=True,
        )
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        address = (str(bound[0]), int(bound[1]))
        self.addresses.append((name, address))
        log.info("listening for %s submissions on %s:%d", name, *address)
        return address

    async def stop(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
        if self._sweeper is not None:
            self._sweeper.cancel()

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.idle_timeout / 4, self.handshake_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                started = conn.line_started
                stuck = started is not None and now - started > self.idle_timeout
                handshake = conn.handshake_deadline
                if (stuck or now - conn.last_activity > self.idle_timeout
                        or (handshake is not None and now > handshake)
                        or (conn.draining_until is not None and now > conn.draining_until)):
                    conn.close()
