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
from certhook.server.throttle import Throttle, message

__all__ = ["LineServer"]

log = logging.getLogger("certhook.server")

_PONG = b"ok pong\r\n"
_OVER = Response.error("syntax", f"line over {MAX_LINE} bytes").encode()
_FULL = Response.error("limit", "too many connections").encode()
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


class _Connection(asyncio.Protocol):
    def __init__(self, server: LineServer, transport_name: str) -> None:
        self._server = server
        self._name = transport_name
        self._transport: asyncio.Transport | None = None
        self._buffer = LineBuffer()
        self._slots: collections.deque[_Slot] = collections.deque()
        self._pending = 0
        self._paused_for_pending = False
        self._paused_for_writing = False
        self._eof = False
        self._tls = False
        self.peer = "?"
        self.address = ""
        self.last_activity = time.monotonic()
        self.line_started: float | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._tls = transport.get_extra_info("sslcontext") is not None
        peername: Any = transport.get_extra_info("peername")
        if isinstance(peername, tuple):
            self.address = str(peername[0])
            self.peer = f"{peername[0]}:{peername[1]}"
        if not self._server.admit(self):
            transport.write(_FULL)
            transport.close()
            self._transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._server.forget(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        if self._transport is None:
            return
        self.last_activity = time.monotonic()
        for line in self._buffer.feed(data):
            self._handle(line)
        if not self._buffer.pending:
            self.line_started = None
        elif self.line_started is None:
            self.line_started = self.last_activity
        self.flush()

    def eof_received(self) -> bool:
        # Answer what was asked before the client's half-close, then close
        # (TLS has no half-close: asyncio closes those transports itself).
        self._eof = True
        self.flush()
        return not self._tls

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
            self._slots.append(_Slot(_OVER))
            return
        try:
            request = parse_request(line, self.peer)
        except ParseError as exc:
            self._slots.append(_Slot(Response.error("syntax", exc.reason).encode()))
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

    def flush(self) -> None:
        transport = self._transport
        if transport is None:
            return
        out = []
        while self._slots and self._slots[0].data is not None:
            data = self._slots.popleft().data
            assert data is not None
            out.append(data)
        if out:
            self._pending = sum(1 for s in self._slots if s.data is None)
            transport.write(b"".join(out))
            self.last_activity = time.monotonic()
        self._update_reading()
        if self._eof and not self._slots:
            transport.close()

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        limit = self._server.max_pending
        self._paused_for_pending = self._pending >= limit
        if self._paused_for_pending or self._paused_for_writing:
            if transport.is_reading():
                transport.pause_reading()
        elif not transport.is_reading() and not self._eof:
            transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class LineServer:
    """The line listeners; create inside the running loop with :meth:`start`."""

    def __init__(
        self,
        committer: Committer,
        idle_timeout: float = 60.0,
        max_connections: int = 4096,
        max_per_address: int = 4096,
        max_pending: int = 64,
    ) -> None:
        self.committer = committer
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.max_pending = max_pending
        self.throttle = Throttle()  # failed key checks; shared with HTTP by AuditServer
        self.connections: set[_Connection] = set()
        self.per_address: collections.Counter[str] = collections.Counter()
        self.requests = 0
        self.refused = 0
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
        server = await loop.create_server(
            lambda: _Connection(self, name), host, port, ssl=ssl_context,
            backlog=4096, ssl_handshake_timeout=15.0 if ssl_context else None,
            reuse_address=True,
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

    def admit(self, conn: _Connection) -> bool:
        if (len(self.connections) >= self.max_connections
                or self.per_address[conn.address] >= self.max_per_address):
            self.refused += 1
            return False
        self.connections.add(conn)
        self.per_address[conn.address] += 1
        return True

    def forget(self, conn: _Connection) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self.per_address[conn.address] -= 1
            if self.per_address[conn.address] <= 0:
                del self.per_address[conn.address]

    async def _sweep(self) -> None:
        period = max(0.05, min(5.0, self.idle_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.connections):
                started = conn.line_started
                stuck = started is not None and now - started > self.idle_timeout
                if stuck or now - conn.last_activity > self.idle_timeout:
                    conn.close()
