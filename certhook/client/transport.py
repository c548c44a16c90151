"""Carry requests to an audit server: the line protocol over TCP or TLS, or HTTPS.

This is the thin I/O layer around :mod:`certhook.protocol`: requests are
encoded there, bytes go through a socket here, answers go back through
:class:`~certhook.protocol.LineBuffer` and ``parse_response``.

Every blocking step has a timeout, and none may run past the
:class:`Deadline` of the whole command, so a server that accepts and never
answers costs at most the deadline. OS errors, timeouts and TLS errors are
translated here, once, into :class:`~certhook.errors.RemoteError` or
:class:`~certhook.errors.RemoteTimeout`, naming the server by its URL (which
never holds the key). Nothing here puts the request line, and so the key,
into a message.

``ssl``, ``json``, ``urllib`` and ``threading`` are imported only by the
transports that need them: a ``tcp://`` delivery to an IP address, the
hook's common case, needs only ``_socket``, the C module under ``socket``.
``socket.socket`` is a thin subclass of ``_socket.socket`` (it adds
``makefile``, ``sendfile`` and enum-typed properties), and ``import socket``
costs the certbot hook ~9 ms (``enum``, ``selectors``), nearly twice its
whole start-up budget (bench/hook.py).
"""

from __future__ import annotations

import _socket
import sys
import time

from certhook.errors import ParseError, ProtocolError, RemoteError, RemoteTimeout
from certhook.protocol import LineBuffer, Response, parse_response

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import ssl
    import urllib.request

    from certhook.client.config import ClientConfig, ServerURL
    from certhook.protocol import Request

__all__ = ["STEP_TIMEOUT", "Deadline", "HttpSession", "LineSession", "Session", "is_loopback",
           "open_session", "plain_http_allowed"]

STEP_TIMEOUT = 5.0  # seconds for one connect, handshake, send or read
_HTTP_STATUS = {400: "syntax", 401: "auth", 403: "auth", 413: "syntax", 429: "limit",
                503: "unavailable"}


class Deadline:
    """A point in time that no network step may run past."""

    __slots__ = ("end",)

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def timeout(self, step: float = STEP_TIMEOUT, what: str = "the deadline") -> float:
        """The timeout for the next step: ``step``, cut to what is left.

        Raises :class:`RemoteTimeout` when nothing is left.
        """
        left = self.remaining()
        if left <= 0.001:
            raise RemoteTimeout(f"{what}: the deadline passed")
        return min(step, left)


def _translate(server: ServerURL, what: str, exc: BaseException) -> RemoteError:
    """One OS, socket or TLS error as a one-line RemoteError naming the server."""
    if isinstance(exc, RemoteError):
        return exc
    if isinstance(exc, _socket.timeout):  # TimeoutError from 3.10 on
        return RemoteTimeout(f"{server}: {what} timed out")
    ssl = sys.modules.get("ssl")
    if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or "verification failed"
        return RemoteError(f"{server}: TLS certificate not trusted: {reason}")
    if ssl is not None and isinstance(exc, ssl.SSLError):
        return RemoteError(f"{server}: TLS {what} failed: {exc.reason or exc.library or exc}")
    if isinstance(exc, ConnectionRefusedError):
        return RemoteError(f"{server}: connection refused")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return RemoteError(f"{server}: connection reset during {what}")
    if isinstance(exc, _socket.gaierror):
        return RemoteError(f"{server}: cannot resolve host: {exc.strerror or exc}")
    if isinstance(exc, OSError):
        return RemoteError(f"{server}: {what} failed: {exc.strerror or exc}")
    return RemoteError(f"{server}: {what} failed: {type(exc).__name__}")


def _address_family(host: str) -> int | None:
    """AF_INET or AF_INET6 for an IP literal, None for a name."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


def _resolve(server: ServerURL, deadline: Deadline) -> list[tuple[int, tuple[object, ...]]]:
    """Addresses of the server. An IP literal needs no lookup (nor the idna codec
    getaddrinfo would load); a name lookup has no timeout of its own, so it
    runs in a thread we stop waiting for at the deadline."""
    family = _address_family(server.host)
    if family == _socket.AF_INET:
        return [(family, (server.host, server.port))]
    if family == _socket.AF_INET6:
        return [(family, (server.host, server.port, 0, 0))]
    import threading

    result: list[list[tuple[int, tuple[object, ...]]]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            infos = _socket.getaddrinfo(server.host, server.port, 0, _socket.SOCK_STREAM)
            result.append([(int(info[0]), tuple(info[4])) for info in infos])
        except BaseException as exc:  # handed to the caller
            errors.append(exc)

    thread = threading.Thread(target=worker, name="certhook-resolve", daemon=True)
    thread.start()
    thread.join(deadline.timeout(STEP_TIMEOUT, f"{server}: name lookup"))
    if errors:
        raise errors[0]
    if not result:
        raise RemoteTimeout(f"{server}: name lookup timed out")
    return result[0]


def _connect(server: ServerURL, deadline: Deadline) -> _socket.socket:
    # _socket.socket has every call made here (settimeout, connect, sendall,
    # recv, detach, close); its timeouts raise _socket.timeout, and its
    # errors are the OSErrors _translate words.
    last: BaseException | None = None
    for family, address in _resolve(server, deadline):
        sock = _socket.socket(family, _socket.SOCK_STREAM)
        try:
            sock.settimeout(deadline.timeout(STEP_TIMEOUT, f"{server}: connect"))
            sock.connect(address)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last if last is not None else RemoteError(f"{server}: no address to connect to")


def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    import ssl

    try:
        # System roots, or only the configured CA; hostname checked either way.
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        from certhook.errors import LocalError

        raise LocalError(f"{ca_file}: cannot load CA file: {getattr(exc, 'strerror', None) or exc}"
                         ) from None


class Session:
    """One conversation with one server. ``submit`` may be called many times."""

    server: ServerURL

    def submit(self, request: Request) -> Response:
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection; never raises."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LineSession(Session):
    """The line protocol over one TCP (``tcp://``) or TLS (``tls://``) connection."""

    def __init__(self, server: ServerURL, deadline: Deadline, ca_file: str | None = None) -> None:
        self.server = server
        self.deadline = deadline
        self._buffer = LineBuffer()
        self._lines: list[bytes | None] = []
        try:
            sock = _connect(server, deadline)
        except (OSError, RemoteError) as exc:
            raise _translate(server, "connect", exc) from None
        self._sock: _socket.socket | socket.socket | None = sock
        if server.scheme == "tls":
            import socket

            context = _tls_context(ca_file)
            wrapped = socket.socket(fileno=sock.detach())  # ssl wraps only socket.socket
            try:
                wrapped.settimeout(deadline.timeout(STEP_TIMEOUT, f"{server}: TLS handshake"))
                # CPython bounds the whole handshake by the timeout, not each read.
                self._sock = context.wrap_socket(wrapped, server_hostname=server.host)
            except (OSError, RemoteError) as exc:
                wrapped.close()
                raise _translate(server, "handshake", exc) from None

    def submit(self, request: Request) -> Response:
        """Send one request and read its one-line answer."""
        line = request.encode()  # ValueError if it cannot be a line: the caller's fault
        sock = self._sock
        if sock is None:
            raise RemoteError(f"{self.server}: connection already closed")
        phase = "send"
        try:
            sock.settimeout(self.deadline.timeout(STEP_TIMEOUT, f"{self.server}: send"))
            sock.sendall(line)  # the timeout bounds all of sendall
            phase = "read"
            return self._read_response()
        except (OSError, RemoteError) as exc:
            self.close()
            raise _translate(self.server, phase, exc) from None

    def _read_response(self) -> Response:
        sock = self._sock
        assert sock is not None
        while not self._lines:
            sock.settimeout(self.deadline.timeout(STEP_TIMEOUT, f"{self.server}: read"))
            data = sock.recv(4096)
            if not data:
                raise RemoteError(f"{self.server}: closed the connection before answering")
            self._lines.extend(self._buffer.feed(data))
        line = self._lines.pop(0)
        if line is None:
            raise ProtocolError("answer longer than 1000 bytes", str(self.server))
        try:
            return parse_response(line, str(self.server))
        except ParseError as exc:
            raise ProtocolError(exc.reason, str(self.server)) from None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


class HttpSession(Session):
    """``POST /api/v1/submissions`` with a bearer key and a JSON body, one per request."""

    def __init__(self, server: ServerURL, deadline: Deadline, api_key: str | None,
                 ca_file: str | None = None) -> None:
        self.server = server
        self.deadline = deadline
        self._api_key = api_key
        self._context = _tls_context(ca_file) if server.scheme == "https" else None

    def __repr__(self) -> str:
        return f"HttpSession({str(self.server)!r})"

    def submit(self, request: Request) -> Response:
        """POST one submission; the answer as a Response. Runs in a thread that
        is abandoned at the deadline (urllib bounds each read, not the whole)."""
        import threading

        done: list[Response] = []
        failed: list[BaseException] = []

        def worker() -> None:
            try:
                done.append(self._post(request))
            except BaseException as exc:  # handed to the caller
                failed.append(exc)

        thread = threading.Thread(target=worker, name="certhook-https", daemon=True)
        thread.start()
        thread.join(self.deadline.timeout(3 * STEP_TIMEOUT, f"{self.server}: POST"))
        if failed:
            raise _translate(self.server, "POST", failed[0]) from None
        if not done:
            raise RemoteTimeout(f"{self.server}: POST timed out")
        return done[0]

    def _post(self, request: Request) -> Response:
        import json
        import urllib.error
        import urllib.request

        body = json.dumps(request.to_json()).encode("ascii")
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": request.client or "certhook"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        url = f"{self.server.scheme}://{_netloc(self.server)}{self.server.path}/api/v1/submissions"
        handlers: list[urllib.request.BaseHandler] = [_no_redirect()]
        if self._context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self._context))
        opener = urllib.request.build_opener(*handlers)
        post = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        timeout = self.deadline.timeout(STEP_TIMEOUT, f"{self.server}: connect")
        try:
            with opener.open(post, timeout=timeout) as reply:
                status, data = reply.status, reply.read(65536)
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read(65536) if exc.fp is not None else b""
            exc.close()
        except urllib.error.URLError as exc:
            reason = exc.reason
            raise _translate(self.server, "POST", reason if isinstance(reason, BaseException)
                             else OSError(str(reason))) from None
        return _http_response(self.server, status, data)


def _netloc(server: ServerURL) -> str:
    host = f"[{server.host}]" if ":" in server.host else server.host
    return f"{host}:{server.port}"


def _http_response(server: ServerURL, status: int, data: bytes) -> Response:
    import json

    try:
        body = json.loads(data.decode("utf-8")) if data else None
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = {}
    if status == 200 and body.get("ok") is True:
        fields = {"id": body.get("id"), "domains": body.get("domains")}
        return Response.success(**{k: str(v) for k, v in fields.items() if v is not None})
    if status == 200:
        raise ProtocolError("HTTP 200 without {\"ok\": true}", str(server))
    if 300 <= status < 400:
        raise RemoteError(f"{server}: HTTP {status} redirect refused (the key is not re-sent)")
    code = body.get("error")
    if not isinstance(code, str) or not code.isalpha():
        code = _HTTP_STATUS.get(status, "internal")
    message = body.get("message")
    text = " ".join(str(message).split())[:200] if message else f"HTTP {status}"
    return Response.error(code, text)


def _no_redirect() -> urllib.request.BaseHandler:
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        """Redirects are not followed: urllib would re-send the Authorization header."""

        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    return NoRedirect()


_TRUE = ("1", "yes", "true", "on")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback address (127.0.0.0/8, ::1).

    Decided on the name as written, never by resolving it: a name that
    resolves to loopback today may not tomorrow.
    """
    host = host.lower().rstrip(".")
    if host == "localhost":
        return True
    family = _address_family(host)
    if family == _socket.AF_INET:
        return host.split(".")[0] == "127"
    if family == _socket.AF_INET6:
        packed = _socket.inet_pton(_socket.AF_INET6, host)
        return packed == bytes(15) + b"\x01" or (
            packed[:12] == bytes(10) + b"\xff\xff" and packed[12] == 127)
    return False


def plain_http_allowed(config: ClientConfig, environ: dict[str, str] | None = None) -> bool:
    """``[client] allow_http = yes`` or ``CERTHOOK_ALLOW_HTTP=1``: http:// beyond loopback."""
    import os

    env = os.environ if environ is None else environ
    if env.get("CERTHOOK_ALLOW_HTTP", "").strip().lower() in _TRUE:
        return True
    value = config.sections.get("client", {}).get("allow_http", "")
    return value.strip().lower() in _TRUE


def open_session(server: ServerURL, config: ClientConfig, deadline: Deadline) -> Session:
    """Connect to ``server``; RemoteError (or RemoteTimeout) if it cannot be reached.

    ``http://`` to a host that is not loopback is refused (RemoteError, so the
    next server is tried and the submission stays spooled) unless allowed:
    the key would cross the network in clear.
    """
    if server.is_line:
        return LineSession(server, deadline, config.ca_file)
    if server.scheme == "http" and not is_loopback(server.host) and not plain_http_allowed(
            config):
        raise RemoteError(f"{server}: refused: http:// would send the API key in clear;"
                          " use https://, or allow it with [client] allow_http = yes"
                          " (or CERTHOOK_ALLOW_HTTP=1)")
    return HttpSession(server, deadline, config.api_key, config.ca_file)
