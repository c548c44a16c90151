"""The HTTP and HTTPS listeners of ``certhook serve``: standard library, bounded.

A slow client must cost a file descriptor and a small buffer, never a
thread. So one selector thread accepts connections, completes TLS
handshakes and reads each request (request line, headers and a body up to
``max_body``) without blocking; only a request that has fully arrived goes
to a small pool of worker threads, which run the WSGI application through
wsgiref's request handler and write the answer. Bounds:

* ``request_timeout`` (10 s) for everything before the request is complete:
  TCP accept to the last byte of the body, the TLS handshake included. It is
  a total, not a per-read timeout, so a client sending one byte every few
  seconds ("slowloris") is answered 408 and closed when it runs out.
* ``max_connections`` in all and ``max_per_address`` from one address;
  past either a new connection is answered 503 and closed at once.
* ``workers`` threads run requests; ``write_timeout`` bounds each write of
  an answer to a client that stops reading.

One request per connection (the answer says ``HTTP/1.0`` and closes), as
wsgiref did before. Nothing here logs a traceback for a client's fault: a
dropped or timed-out connection is at most one DEBUG line, with the request
line escaped and any key in the query redacted.
"""

from __future__ import annotations

import io
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import unquote_plus
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler

__all__ = ["REQUEST_TIMEOUT", "SECRET_PARAMS", "HttpServer", "escape", "redact"]

log = logging.getLogger("certhook.http")

REQUEST_TIMEOUT = 10.0  # seconds from accept to a complete request
WRITE_TIMEOUT = 10.0  # seconds for one write of an answer
WORKERS = 16
MAX_HEAD = 65536  # request line and headers (wsgiref's own line limit)
# Query parameters that carry a key; the application refuses them, the log redacts them.
SECRET_PARAMS = frozenset({"apikey", "api_key", "key", "token", "access_token", "password"})

_PAIR = re.compile(r"(?<=[?&;])([^=&;\s]*)=([^&;\s]*)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def redact(text: str) -> str:
    """``text`` (a request line, a URL) with the value of every key-bearing parameter hidden."""
    def hide(match: re.Match[str]) -> str:
        name = unquote_plus(match.group(1)).strip().lower()
        return f"{match.group(1)}=[redacted]" if name in SECRET_PARAMS else match.group(0)

    return _PAIR.sub(hide, text)


def escape(text: str) -> str:
    """Control characters as ``\\xNN`` (C0, DEL, C1): a log record stays one plain line."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


class _Writer(io.RawIOBase):
    """The worker's output: every write goes out whole (``sendall``, bounded by the timeout)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self._sock.sendall(data)
        return len(data)


class _ServerHandler(ServerHandler):
    def log_exception(self, exc_info: Any) -> None:
        # wsgiref prints a traceback to stderr; a client that went away is not news.
        log.debug("%s while answering", exc_info[0].__name__)


class _Handler(WSGIRequestHandler):
    """wsgiref's request handler, fed from the buffer the selector thread filled."""

    def __init__(self, sock: socket.socket, data: bytes, client_address: Any,
                 server: _Site) -> None:
        self._data = data
        super().__init__(sock, client_address, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = io.BytesIO(self._data)
        # Buffered: the status line, headers and body leave in one send, not five.
        self.wfile = io.BufferedWriter(_Writer(self.request), 65536)

    def finish(self) -> None:
        pass

    def handle(self) -> None:
        # As WSGIRequestHandler.handle, with a handler that logs no traceback.
        self.raw_requestline = self.rfile.readline(MAX_HEAD + 1)
        if len(self.raw_requestline) > MAX_HEAD:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(self.rfile, self.wfile, io.StringIO(),  # type: ignore[arg-type]
                                 self.get_environ(),
                                 multithread=True)
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s", self.address_string(), escape(redact(format % args)))

    def address_string(self) -> str:
        return str(self.client_address[0])


class _Site:
    """What wsgiref's handler wants of its server: the app and the base environ."""

    def __init__(self, app: Callable[..., Any], host: str, port: int, tls: bool) -> None:
        self.app = app
        self.base_environ = {"SERVER_NAME": host, "GATEWAY_INTERFACE": "CGI/1.1",
                             "SERVER_PORT": str(port), "REMOTE_HOST": "",
                             "CONTENT_LENGTH": "", "SCRIPT_NAME": ""}
        if tls:
            self.base_environ["HTTPS"] = "on"  # wsgi.url_scheme = https

    def get_app(self) -> Callable[..., Any]:
        return self.app


class _Conn:
    __slots__ = ("address", "buffer", "deadline", "handshaken", "peer", "sock")

    def __init__(self, sock: socket.socket, peer: Any, deadline: float, tls: bool) -> None:
        self.sock = sock
        self.peer = peer
        self.address = str(peer[0])
        self.deadline = deadline
        self.buffer = bytearray()
        self.handshaken = not tls


def _head_end(buffer: bytearray) -> int:
    """Where the body starts, or -1 while the head is incomplete."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = buffer.find(sep)
        if at >= 0:
            return at + len(sep)
    return -1


def _content_length(head: bytes) -> int:
    """The declared body length; 0 when absent or unreadable (the app answers those)."""
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 12 else 0
    return 0


class HttpServer:
    """Serve a WSGI app on host:port (HTTPS with an SSL context) in background threads."""

    def __init__(self, app: Callable[..., Any], host: str, port: int,
                 ssl_context: ssl.SSLContext | None = None, *, max_connections: int = 1024,
                 max_per_address: int = 256, max_body: int = 64 * 1024,
                 workers: int = WORKERS, request_timeout: float = REQUEST_TIMEOUT) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.create_server((host, port), family=family, backlog=1024)
        self._listener.setblocking(False)
        bound = self._listener.getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        self.scheme = "https" if ssl_context else "http"
        self._context = ssl_context
        self._site = _Site(app, host, self.address[1], ssl_context is not None)
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.max_body = max_body
        self.request_timeout = request_timeout
        self._pool = ThreadPoolExecutor(max(1, workers),
                                        thread_name_prefix=f"certhook-{self.scheme}")
        self._selector = selectors.DefaultSelector()
        self._reading: dict[_Conn, None] = {}  # in accept order = deadline order
        self._lock = threading.Lock()
        self._per_address: dict[str, int] = {}
        self._open = 0
        self._stopping = threading.Event()
        self._accept_paused = 0.0
        self.refused = 0  # connections turned away at a limit
        self.timed_out = 0  # connections closed at the request deadline
        self._thread = threading.Thread(target=self._loop, name=f"certhook-{self.scheme}-io",
                                        daemon=True)

    def start(self) -> None:
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread.start()
        log.info("listening for %s on %s:%d", self.scheme.upper(), *self.address)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    # the selector thread
    def _loop(self) -> None:
        try:
            while not self._stopping.is_set():
                for key, _ in self._selector.select(0.2):
                    if key.data is None:
                        self._accept()
                    else:
                        self._step(key.data)
                self._expire(time.monotonic())
        finally:
            for conn in list(self._reading):
                self._close(conn)
            self._selector.close()
            self._listener.close()

    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: pause accepting for a moment
                self._pause_accepting(exc)
                return
            address = str(peer[0])
            with self._lock:
                full = (self._open >= self.max_connections
                        or self._per_address.get(address, 0) >= self.max_per_address)
                if not full:
                    self._open += 1
                    self._per_address[address] = self._per_address.get(address, 0) + 1
            if full:
                self.refused += 1
                if self._context is None:
                    _refuse(sock)  # a TLS client would not understand a plain answer
                sock.close()
                continue
            sock.setblocking(False)
            tls = self._context is not None
            if self._context is not None:
                try:
                    sock = self._context.wrap_socket(sock, server_side=True,
                                                     do_handshake_on_connect=False)
                except (OSError, ValueError):
                    sock.close()
                    self._release(address)
                    continue
            conn = _Conn(sock, peer, time.monotonic() + self.request_timeout, tls)
            self._reading[conn] = None
            self._selector.register(sock, selectors.EVENT_READ, conn)

    def _pause_accepting(self, exc: OSError) -> None:
        # The listener stays readable while accept() fails: without a pause
        # this thread would spin. One line per pause, not per attempt.
        log.warning("cannot accept %s connections: %s; pausing 1 s", self.scheme.upper(),
                    exc.strerror or exc)
        self._selector.unregister(self._listener)
        self._accept_paused = time.monotonic() + 1.0

    def _step(self, conn: _Conn) -> None:
        if not conn.handshaken and not self._handshake(conn):
            return
        sock = conn.sock
        while len(conn.buffer) <= MAX_HEAD + self.max_body:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError,
                    ssl.SSLWantWriteError):
                break
            except OSError:
                self._close(conn)
                return
            if not data:
                self._close(conn)
                return
            conn.buffer += data
        end = _head_end(conn.buffer)
        if end < 0:
            if len(conn.buffer) > MAX_HEAD:
                first_line_done = b"\n" in conn.buffer[:MAX_HEAD]
                self._answer(conn, b"431 Request Header Fields Too Large" if first_line_done
                             else b"414 URI Too Long")
            return
        length = _content_length(bytes(conn.buffer[:end]))
        if length > self.max_body:  # the app answers 413 from the headers alone
            del conn.buffer[end:]
        elif len(conn.buffer) < end + length:
            return
        self._dispatch(conn)

    def _handshake(self, conn: _Conn) -> bool:
        sock: Any = conn.sock
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            self._selector.modify(sock, selectors.EVENT_READ, conn)
            return False
        except ssl.SSLWantWriteError:
            self._selector.modify(sock, selectors.EVENT_WRITE, conn)
            return False
        except (OSError, ValueError) as exc:  # SSLError is an OSError
            log.debug("%s: TLS handshake failed: %s", conn.address,
                      escape(str(getattr(exc, "reason", None) or exc)))
            self._close(conn)
            return False
        conn.handshaken = True
        self._selector.modify(sock, selectors.EVENT_READ, conn)
        return True

    def _expire(self, now: float) -> None:
        if self._accept_paused and now > self._accept_paused:
            self._accept_paused = 0.0
            self._selector.register(self._listener, selectors.EVENT_READ, None)
        while self._reading:
            conn = next(iter(self._reading))
            if conn.deadline > now:
                return
            self.timed_out += 1
            log.debug("%s: request not complete within %.0f s; closed",
                      conn.address, self.request_timeout)
            if conn.handshaken:
                self._answer(conn, b"408 Request Timeout")
            else:
                self._close(conn)

    def _answer(self, conn: _Conn, status: bytes) -> None:
        """A short error answer written without blocking (best effort), then close."""
        try:
            conn.sock.send(b"HTTP/1.1 " + status + b"\r\nConnection: close\r\n"
                           b"Content-Length: 0\r\n\r\n")
        except (OSError, ValueError):
            pass
        self._close(conn)

    def _unregister(self, conn: _Conn) -> None:
        self._reading.pop(conn, None)
        try:
            self._selector.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _close(self, conn: _Conn) -> None:
        self._unregister(conn)
        try:
            conn.sock.close()
        except OSError:
            pass
        self._release(conn.address)

    def _release(self, address: str) -> None:
        with self._lock:
            self._open -= 1
            left = self._per_address.get(address, 1) - 1
            if left > 0:
                self._per_address[address] = left
            else:
                self._per_address.pop(address, None)

    def _dispatch(self, conn: _Conn) -> None:
        self._unregister(conn)
        try:
            self._pool.submit(self._run, conn)
        except RuntimeError:  # shutting down
            self._close(conn)

    # a worker thread
    def _run(self, conn: _Conn) -> None:
        sock = conn.sock
        try:
            sock.settimeout(WRITE_TIMEOUT)
            _Handler(sock, bytes(conn.buffer), conn.peer, self._site)
        except (OSError, ValueError) as exc:
            log.debug("%s: connection dropped while answering: %s", conn.address,
                      type(exc).__name__)
        except Exception:  # the app catches its own; this is wsgiref or us
            log.exception("HTTP request handler failed")
        finally:
            try:
                sock.close()
            except OSError:
                pass
            self._release(conn.address)


def _refuse(sock: socket.socket) -> None:
    try:
        sock.setblocking(False)
        sock.send(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                  b"Retry-After: 10\r\nContent-Length: 21\r\n\r\ntoo many connections\n")
    except OSError:
        pass
