"""Test doubles for the reporting client: recording audit servers and fake lineages.

``LineServer`` speaks the line protocol (plain or TLS) on 127.0.0.1 and
keeps every request it acknowledged; it can be told to misbehave.
``HttpServer`` is the HTTPS fallback (``POST /api/v1/submissions``).
``make_lineage`` / ``renew_lineage`` lay out a certbot lineage (archive,
live symlinks, renewal conf) with a certificate minted by trustme, for
tests that need certbot's state but not certbot.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

from certhook.errors import ParseError
from certhook.protocol import LineBuffer, Request, Response, parse_request

KEY = "ck_Test-Key.0123456789abcdef"

# What a LineServer does with each line:
MODES = (
    "ok",           # check the key, record, answer "ok id ID domains N"
    "silent",       # read, never answer, keep the connection open
    "garbage",      # answer bytes that are not a response line
    "close",        # close the connection on the first line, unanswered
    "unavailable",  # "error unavailable ..."
    "syntax",       # "error syntax ..."
    "auth",         # "error auth ..."
    "echo-key",     # "error auth" quoting the key back (a hostile server)
)


class LineServer:
    """A recording line-protocol server on 127.0.0.1 (TLS if given a trustme CA)."""

    def __init__(self, mode: str = "ok", ca: trustme.CA | None = None, key: str = KEY,
                 port: int = 0, delay: float = 0.0) -> None:
        assert mode in MODES
        self.mode = mode
        self.delay = delay  # seconds before each answer
        self.key = key
        self.requests: list[Request] = []
        self.lines: list[bytes] = []
        self.connections = 0
        self._ctx: ssl.SSLContext | None = None
        if ca is not None:
            self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._ctx)
        self._port = port
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"{'tls' if self._ctx else 'tcp'}://127.0.0.1:{self._port}"

    def start(self) -> LineServer:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(16)
        self._port = listener.getsockname()[1]
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and drop every connection (start() again reuses the port)."""
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for thread in self._threads:
            thread.join(5)
        self._threads = []

    def __enter__(self) -> LineServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ids(self) -> list[str | None]:
        return [r.id for r in self.requests]

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self._ctx is not None:
                conn.settimeout(5)
                conn = self._ctx.wrap_socket(conn, server_side=True)
                with self._lock:
                    self._open.append(conn)
            conn.settimeout(None)
            buffer = LineBuffer()
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                for line in buffer.feed(data):
                    answer = self._answer(line)
                    if self.delay:
                        time.sleep(self.delay)
                    if answer is None:
                        if self.mode == "close":
                            conn.close()
                            return
                        continue
                    conn.sendall(answer)
        except (OSError, ssl.SSLError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _answer(self, line: bytes | None) -> bytes | None:
        if line is not None:
            self.lines.append(line)
        mode = self.mode
        if mode in ("silent", "close"):
            return None
        if mode == "garbage":
            return b"HTTP/1.1 400 Bad Request\r\n\x00\xff\r\n"
        if mode == "echo-key":
            return f"error auth key {self.key} is unknown\r\n".encode()
        if mode in ("unavailable", "syntax", "auth"):
            return Response.error(mode, f"test server says {mode}").encode()
        if line is None:
            return Response.error("syntax", "line over 1000 bytes").encode()
        try:
            request = parse_request(line)
        except ParseError as exc:
            return Response.error("syntax", exc.reason).encode()
        if request.apikey != self.key:
            return Response.error("auth", "unknown key").encode()
        with self._lock:
            self.requests.append(request)
        return Response.success(id=request.id or "x", domains=str(len(request.domains))).encode()


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # http.server's name
        owner = self.server.owner
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        owner.bodies.append(raw)
        owner.headers.append(dict(self.headers))
        if self.path != "/api/v1/submissions":
            self._reply(404, {"ok": False, "error": "syntax", "message": "no such path"})
            return
        if owner.mode == "unavailable":
            self._reply(503, {"ok": False, "error": "unavailable", "message": "try later"})
            return
        if self.headers.get("Authorization") != f"Bearer {owner.key}":
            self._reply(401, {"ok": False, "error": "auth", "message": "unknown key"})
            return
        try:
            request = Request.from_json(json.loads(raw), owner.key, "http")
        except (ValueError, ParseError) as exc:
            self._reply(400, {"ok": False, "error": "syntax", "message": str(exc)})
            return
        owner.requests.append(request)
        self._reply(200, {"ok": True, "id": request.id, "domains": len(request.domains)})


class _RecordingHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpServer


class HttpServer:
    """The HTTPS fallback (plain HTTP without a CA), recording what it took."""

    def __init__(self, mode: str = "ok", ca: trustme.CA | None = None, key: str = KEY) -> None:
        self.mode = mode
        self.key = key
        self.requests: list[Request] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._ca = ca
        self._server: _RecordingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"{'https' if self._ca else 'http'}://127.0.0.1:{port}"

    def start(self) -> HttpServer:
        server = _RecordingHTTPServer(("127.0.0.1", 0), _Handler)
        server.owner = self
        if self._ca is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ca.issue_cert("127.0.0.1").configure_cert(ctx)
            server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (refused connections)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_env(tmp_path: Path, server: str, key: str = KEY, **extra: str) -> dict[str, str]:
    """Environment for a certhook client process: no config file, everything in variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CERTHOOK_", "RENEWED_",
                                                                      "FAILED_"))}
    empty = tmp_path / "empty-certhook.conf"
    empty.touch()
    env.update({
        "CERTHOOK_CONFIG": str(empty),
        "CERTHOOK_SERVER": server,
        "CERTHOOK_API_KEY": key,
        "CERTHOOK_SPOOL_DIR": str(tmp_path / "spool"),
    })
    env.update(extra)
    return env


def write_conf(path: Path, server: str, key: str = KEY, mode: int = 0o600, **client: str) -> Path:
    lines = ["[client]", f"server = {server}", f"api_key = {key}"]
    lines += [f"{k} = {v}" for k, v in client.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(mode)
    return path


# -- fake certbot lineages ---------------------------------------------------

_CA = trustme.CA()


def _pem_cert(domains: tuple[str, ...]) -> bytes:
    leaf = _CA.issue_cert(*domains)
    return leaf.cert_chain_pems[0].bytes()


def sha256_of_pem(path: Path) -> str:
    """The fingerprint certhook should send, computed independently (cryptography)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


def make_lineage(config_dir: Path, name: str, *domains: str) -> Path:
    """A lineage as certbot lays it out, at version 1; returns its live directory."""
    archive = config_dir / "archive" / name
    live = config_dir / "live" / name
    archive.mkdir(parents=True)
    live.mkdir(parents=True)
    (config_dir / "renewal").mkdir(exist_ok=True)
    conf = [
        "version = 5.8.0",
        f"archive_dir = {archive}",
        *(f"{kind} = {live}/{kind}.pem" for kind in ("cert", "privkey", "chain", "fullchain")),
        "[renewalparams]",
        "authenticator = manual",
        "server = https://127.0.0.1:1/dir",
    ]
    (config_dir / "renewal" / f"{name}.conf").write_text("\n".join(conf) + "\n")
    _write_version(config_dir, name, domains, 1)
    return live


def renew_lineage(config_dir: Path, name: str, *domains: str) -> Path:
    """Add the next version of a lineage and point its live links at it."""
    archive = config_dir / "archive" / name
    version = max(int(p.name[4:-4]) for p in archive.glob("cert*.pem")) + 1
    _write_version(config_dir, name, domains, version)
    return config_dir / "live" / name


def _write_version(config_dir: Path, name: str, domains: tuple[str, ...], version: int) -> None:
    archive = config_dir / "archive" / name
    live = config_dir / "live" / name
    cert = _pem_cert(domains)
    chain = _CA.cert_pem.bytes()
    files = {"cert": cert, "chain": chain, "fullchain": cert + chain,
             "privkey": b"-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----\n"}
    for kind, data in files.items():
        (archive / f"{kind}{version}.pem").write_bytes(data)
        link = live / f"{kind}.pem"
        if link.is_symlink():
            link.unlink()
        os.symlink(f"../../archive/{name}/{kind}{version}.pem", link)


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())
