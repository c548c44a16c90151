"""A bounded HTTP(S) GET for what the probe asks of a CA: ARI and CRLs.

Standard library only, and small on purpose: HTTP/1.0 (so no chunked
transfer coding and no keep-alive), one request per connection, a cap on the
size of the headers and of the body, one monotonic deadline for the whole
exchange (resolution, connect, TLS, every read: a server trickling one byte
at a time cannot stretch it), and at most :data:`MAX_REDIRECTS` redirects,
each fetched under the same rules and the same deadline.

The decision point of the SSRF guard is here: ``allow_address`` is called
with each resolved address right before ``connect``, exactly as the probe
calls it (``certhook/server/ssrf.py``), so a URL that names, resolves to, or
redirects to a loopback, private, link-local or metadata address is refused
by the audit server before a packet is sent. ``certhook probe`` passes no
guard: it runs with its user's own network rights (docs/probe.md).

The response parser (:class:`ResponseReader`) is sans-IO; :func:`get` is
the socket pump.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urljoin, urlsplit

from certhook.errors import ParseError, ProtocolError, RemoteError, RemoteTimeout

__all__ = ["MAX_HEADER_BYTES", "MAX_REDIRECTS", "Response", "ResponseReader", "get"]

MAX_REDIRECTS = 2
MAX_HEADER_BYTES = 16 * 1024
_USER_AGENT = "certhook"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Response:
    """A complete response: status, headers (names lower-cased), body, where it came from."""

    status: int
    headers: dict[str, str] = field(repr=False)
    body: bytes = field(repr=False)
    url: str
    address: str


class ResponseReader:
    """Sans-IO reader of one HTTP/1.x response to a GET (RFC 9112).

    ``feed(data)`` with what arrived, ``feed(b"")`` at end of stream; then
    :meth:`result` gives ``(status, headers, body)``. A body longer than
    ``max_body`` or headers longer than :data:`MAX_HEADER_BYTES` raise
    :class:`ParseError` as soon as they are seen, so memory stays bounded.
    """

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buf = bytearray()
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self._length: int | None = None
        self.done = False

    def feed(self, data: bytes) -> None:
        if self.done:
            return
        if not data:  # end of stream
            if self.status is None:
                raise ParseError("connection closed before the response headers")
            if self._length is not None and len(self._buf) < self._length:
                raise ParseError(f"body cut short at {len(self._buf)} of {self._length} bytes")
            self.done = True
            return
        self._buf += data
        if self.status is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    raise ParseError(f"response headers over {MAX_HEADER_BYTES} bytes")
                return
            self._parse_head(bytes(self._buf[:end]))
            del self._buf[: end + 4]
        if len(self._buf) > self._max_body:
            raise ParseError(f"body over {self._max_body} bytes")
        if self._length is not None and len(self._buf) >= self._length:
            del self._buf[self._length:]
            self.done = True

    def _parse_head(self, head: bytes) -> None:
        try:
            text = head.decode("iso-8859-1")  # RFC 9110 5.5: octets, historically Latin-1
        except UnicodeDecodeError:  # pragma: no cover - Latin-1 decodes any byte
            raise ParseError("undecodable headers") from None
        lines = text.split("\r\n")
        words = lines[0].split(" ", 2)
        if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit() \
                or len(words[1]) != 3:
            raise ParseError(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
        self.status = int(words[1])
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise ParseError(f"malformed header line {line[:40]!r}")
            self.headers[name.lower()] = value.strip()
        if "transfer-encoding" in self.headers:
            # An HTTP/1.0 request must not get a chunked reply (RFC 9112 6.1).
            raise ParseError("transfer-encoding in a reply to HTTP/1.0")
        length = self.headers.get("content-length")
        if length is not None:
            if not length.isdigit() or len(length) > 15:
                raise ParseError(f"bad content-length {length[:20]!r}")
            self._length = int(length)
            if self._length > self._max_body:
                raise ParseError(f"body of {self._length} bytes is over {self._max_body}")

    def result(self) -> tuple[int, dict[str, str], bytes]:
        if not self.done or self.status is None:
            raise ParseError("response incomplete")
        return self.status, self.headers, bytes(self._buf)


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RemoteTimeout(f"timed out {what}")
    return left


def _resolve(host: str, port: int, deadline: float) -> list[tuple[int, Any]]:
    """getaddrinfo in a helper thread that is abandoned at the deadline."""
    outcome: list[Any] = []

    def lookup() -> None:
        try:
            outcome.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            outcome.append(exc)

    worker = threading.Thread(target=lookup, name=f"resolve {host}", daemon=True)
    worker.start()
    worker.join(_remaining(deadline, f"resolving {host}"))
    if not outcome:
        raise RemoteTimeout(f"timed out resolving {host}")
    if isinstance(outcome[0], BaseException):
        raise RemoteError(f"cannot resolve {host}")
    return [(family, sockaddr) for family, _t, _p, _n, sockaddr in outcome[0]
            if family in (socket.AF_INET, socket.AF_INET6)]


def _connect(host: str, port: int, deadline: float,
             allow_address: Callable[[str], bool] | None) -> tuple[socket.socket, str]:
    refused: list[str] = []
    error = f"cannot resolve {host}"
    for family, sockaddr in _resolve(host, port, deadline):
        ip = str(sockaddr[0])
        if allow_address is not None and not allow_address(ip):
            refused.append(ip)
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline, f"connecting to {ip}"))
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            if isinstance(exc, socket.timeout):
                raise RemoteTimeout(f"timed out connecting to {ip}") from None
            error = f"cannot connect to {ip}: {exc.strerror or type(exc).__name__}"
            continue
        return sock, ip
    if refused and error.startswith("cannot resolve"):
        raise RemoteError(f"address not allowed: {', '.join(refused)}")
    raise RemoteError(error)


def _tls(sock: socket.socket, host: str, deadline: float) -> ssl.SSLSocket:
    # A CA's HTTPS endpoint is verified as a browser would (system roots, the name).
    context = ssl.create_default_context()
    sock.setblocking(False)
    tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    with selectors.DefaultSelector() as selector:
        selector.register(tls, selectors.EVENT_READ)
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                selector.modify(tls, selectors.EVENT_READ)
            except ssl.SSLWantWriteError:
                selector.modify(tls, selectors.EVENT_WRITE)
            if not selector.select(_remaining(deadline, f"in the TLS handshake with {host}")):
                raise RemoteTimeout(f"timed out in the TLS handshake with {host}")


def _exchange(sock: socket.socket, request: bytes, reader: ResponseReader, deadline: float,
              ip: str) -> None:
    sock.settimeout(_remaining(deadline, f"sending to {ip}"))
    sock.sendall(request)
    while not reader.done:
        # The timeout of every read is what is left of the one deadline.
        sock.settimeout(_remaining(deadline, f"reading from {ip}"))
        reader.feed(sock.recv(65536))


def _once(url: str, deadline: float, max_bytes: int, accept: str,
          allow_address: Callable[[str], bool] | None) -> Response:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RemoteError(f"{url[:80]}: not an http or https URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise RemoteError(f"{url[:80]}: bad port") from None
    host = parts.hostname
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    sock, ip = _connect(host, port, deadline, allow_address)
    reader = ResponseReader(max_bytes)
    try:
        if parts.scheme == "https":
            sock = _tls(sock, host, deadline)
        host_header = f"[{host}]" if ":" in host else host
        if parts.port:
            host_header += f":{parts.port}"
        request = (f"GET {path} HTTP/1.0\r\nHost: {host_header}\r\nAccept: {accept}\r\n"
                   f"User-Agent: {_USER_AGENT}\r\nConnection: close\r\n\r\n")
        _exchange(sock, request.encode("ascii", "strict"), reader, deadline, ip)
    except socket.timeout:
        raise RemoteTimeout(f"timed out fetching {host}") from None
    except ssl.SSLError as exc:
        raise RemoteError(f"TLS with {host} failed: {exc.reason or exc}") from None
    except OSError as exc:
        raise RemoteError(f"fetching from {host} failed: {exc.strerror or exc}") from None
    except UnicodeEncodeError:
        raise RemoteError(f"{url[:80]}: not an ASCII URL") from None
    except ParseError as exc:
        raise ProtocolError(exc.reason, host) from None
    finally:
        sock.close()
    status, headers, body = reader.result()
    return Response(status, headers, body, url, ip)


def get(url: str, *, timeout: float, max_bytes: int, accept: str = "*/*",
        allow_address: Callable[[str], bool] | None = None,
        max_redirects: int = MAX_REDIRECTS) -> Response:
    """GET ``url`` within ``timeout`` seconds and ``max_bytes`` of body.

    ``allow_address(ip)`` decides on every address before it is connected
    to. Redirects are followed at most ``max_redirects`` times, each through
    the same guard. Raises :class:`RemoteError` (:class:`RemoteTimeout`,
    :class:`ProtocolError`) for every fault; any status is returned as is.
    """
    deadline = time.monotonic() + timeout
    for _ in range(max_redirects + 1):
        response = _once(url, deadline, max_bytes, accept, allow_address)
        location = response.headers.get("location")
        if response.status not in _REDIRECTS or not location:
            return response
        url = urljoin(url, location)
    raise RemoteError(f"more than {max_redirects} redirects from {url[:80]}")
