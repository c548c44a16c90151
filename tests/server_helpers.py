"""Helpers for the audit-server tests: servers on loopback, clients, fakes.

Everything listens on 127.0.0.1 (or ::1) with ephemeral ports. Nothing
here resolves a real name: :func:`resolve_names` replaces
``socket.getaddrinfo`` so test names map to loopback and any other name
fails loudly.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from certhook.server import store
from certhook.server.config import ServerConfig
from certhook.server.runner import AuditServer


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05,
               what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


# The store the server tests run on: "sqlite", or "postgres" with a function that makes
# a fresh database's URL (set for each test by the ``backend`` fixture of conftest.py).
BACKEND: dict[str, Any] = {"name": "sqlite", "new_database": None}


def fresh_db(tmp_path: Path, name: str = "certhook.db") -> str:
    """A new, empty database's ``db`` setting on this test's backend: a path in
    ``tmp_path``, or the URL of a new PostgreSQL database."""
    if BACKEND["name"] == "postgres":
        tmp_path.mkdir(parents=True, exist_ok=True)  # as SQLite's store makes its directory
        return str(BACKEND["new_database"]())
    return str(tmp_path / name)


def new_db(tmp_path: Path, *accounts: str) -> tuple[str, dict[str, str]]:
    """A fresh database with the given accounts; returns its ``db`` setting and their keys."""
    db = fresh_db(tmp_path)
    opened = store.open_store(db)
    try:
        keys = {name: opened.add_account(name) for name in accounts}
    finally:
        opened.close()
    return db, keys


def config(db: str, **changes: Any) -> ServerConfig:
    """A config on ephemeral loopback ports, no TLS listener, fast timers."""
    base = ServerConfig(db=db, line_listen=("127.0.0.1", 0), http_listen=("127.0.0.1", 0),
                        retry_interval=0.2, probe_timeout=3.0, notify_group_window=0.2)
    return replace(base, **changes)


@contextlib.contextmanager
def running(cfg: ServerConfig, probe_fn: Any = None, audit: bool = True
            ) -> Iterator[AuditServer]:
    server = AuditServer(cfg, probe_fn=probe_fn, audit=audit).start()
    try:
        yield server
    finally:
        server.stop()


class LineClient:
    """A blocking line-protocol client on one connection."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext | None = None,
                 timeout: float = 10.0) -> None:
        sock = socket.create_connection(address, timeout=timeout)
        self.sock: socket.socket = (
            context.wrap_socket(sock, server_hostname="127.0.0.1") if context else sock
        )
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed; pending {self._buf!r}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.rstrip(b"\r")

    def ask(self, data: bytes) -> bytes:
        self.send(data if data.endswith(b"\n") else data + b"\r\n")
        return self.line()

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            return True

    def close(self) -> None:
        self.sock.close()


def add_line(key: str, *domains: str, **fields: Any) -> bytes:
    words = ["command", "add"]
    for d in domains:
        words += ["domain", d]
    for name, value in fields.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            words += [name, str(item)]
    words += ["apikey", key]
    return " ".join(words).encode() + b"\r\n"


def http(method: str, url: str, body: Any = None, key: str | None = None,
         basic: tuple[str, str] | None = None, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or text)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if basic is not None:
        token = base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=15) as response:
            status, text = response.status, response.read().decode()
            ctype = response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
        ctype = exc.headers.get("Content-Type", "")
    return status, (json.loads(text) if "json" in ctype else text)


def targets(db: str, account: str | None = None) -> list[dict[str, Any]]:
    """Every target (of ``account``) with all its fields, through the store."""
    opened = store.open_store(db, create=False)
    try:
        return [asdict(t) for t in opened.list_targets(account or None)]
    finally:
        opened.close()


def count(db: str, table: str, **where: Any) -> int:
    """How many rows of ``table`` (targets, submissions, notifications, results) have
    each field equal to its value, or, for a callable value, its result true; read
    through the store."""
    opened = store.open_store(db, create=False)
    try:
        if table == "targets":
            rows: list[Any] = opened.list_targets(None)
        elif table == "submissions":
            rows = opened.submissions()
        elif table == "notifications":
            rows = opened.notifications()
        elif table == "results":
            rows = [r for t in opened.list_targets(None)
                    for r in opened.recent_results(t.id, 10**9)]
        else:
            raise ValueError(f"no table {table!r}")
    finally:
        opened.close()
    return sum(all(value(getattr(row, name)) if callable(value)
                   else getattr(row, name) == value for name, value in where.items())
               for row in rows)


def notifications(db: str) -> list[store.Notification]:
    """Every notification, queued or done, oldest first (through the store)."""
    opened = store.open_store(db, create=False)
    try:
        return opened.notifications()
    finally:
        opened.close()


# -- fakes and receivers -----------------------------------------------------------------


@dataclass
class FakeProbe:
    """A probe stand-in: answers from ``results`` (host -> callable or result), records calls."""

    results: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, int, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, target: Any, options: Any) -> Any:
        with self.lock:
            self.calls.append((target.host, target.port, target.protocol))
        answer = self.results.get(target.host, fake_result())
        return answer() if callable(answer) else answer


def fake_leaf(fingerprint: str = "aa" * 32, days: float = 60.0, issuer: str = "Test CA"
              ) -> SimpleNamespace:
    """A leaf as the probe's Certificate has it: a 90-day certificate with ``days`` left."""
    not_after = datetime.now(timezone.utc) + timedelta(days=days, hours=1)
    return SimpleNamespace(fingerprint_sha256=fingerprint, issuer_cn=issuer,
                           issuer=f"CN={issuer}", subject="CN=fake.example",
                           not_valid_after_utc=not_after,
                           not_valid_before_utc=not_after - timedelta(days=90))


def fake_result(status: str = "ok", fingerprint: str = "aa" * 32, days: int = 60,
                reasons: tuple[str, ...] = (), error: str | None = None,
                connected: bool = True) -> SimpleNamespace:
    leaf = fake_leaf(fingerprint, days) if connected else None
    return SimpleNamespace(
        status=status, reasons=reasons, error=error, leaf=leaf, chain=(leaf,) if leaf else (),
        days_left=days if connected else None,
        # a 90-day certificate with ``days`` and an hour left
        seconds_left=days * 86400 + 3600 if connected else None,
        lifetime_seconds=90 * 86400 if connected else None,
        not_after=leaf.not_valid_after_utc if leaf else None,
        address="192.0.2.1" if connected else None, elapsed=0.01,
    )


class _Acceptor:
    """A TCP listener on loopback whose thread hands each connection to ``_accepted``."""

    def __init__(self, host: str = "127.0.0.1", backlog: int = 50, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=backlog)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self._accepted(conn)

    def _accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class CountingListener(_Acceptor):
    """A TCP listener that only counts (and closes) the connections it accepts."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.accepted = 0
        super().__init__(host)

    def _accepted(self, conn: socket.socket) -> None:
        self.accepted += 1
        conn.close()


class TlsEndpoint:
    """A TLS server on loopback serving a chain loaded once (so it keeps serving it).

    With ``fullchain`` and ``privkey`` paths, the chain is loaded at the
    first connection that finds both files (certbot writes them before its
    deploy hook runs) and never reloaded: after a renewal it serves the old
    certificate, as a server nobody restarted would.
    """

    def __init__(self, fullchain: Path | None = None, privkey: Path | None = None) -> None:
        self._paths = (fullchain, privkey)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(20)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.context: ssl.SSLContext | None = None
        self.handshakes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def load(self, fullchain: Path, privkey: Path) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(fullchain), str(privkey))
        self.context = context

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            fullchain, privkey = self._paths
            if self.context is None and fullchain and privkey and fullchain.exists():
                self.load(fullchain, privkey)
            context = self.context
            if context is None:
                conn.close()
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    self.handshakes += 1
                    tls.recv(1)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


class WebhookReceiver:
    """An HTTP server on loopback collecting the JSON bodies POSTed to it."""

    def __init__(self, fail_first: int = 0) -> None:
        received: list[Any] = []
        failures = [fail_first]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if failures[0] > 0:
                    failures[0] -= 1
                    self.send_response(503)
                else:
                    received.append(json.loads(body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.received = received
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpServer:
    """aiosmtpd on loopback with STARTTLS (a trustme CA) and AUTH; collects messages."""

    USER, PASSWORD = "certhook", "s3cret"

    def __init__(self, tmp_path: Path) -> None:
        import trustme
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = str(tmp_path / "smtp-ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        self.messages: list[Any] = []
        messages = self.messages

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                messages.append(envelope)
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                          auth_data: Any) -> Any:
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login == SmtpServer.USER.encode()
                  and auth_data.password == SmtpServer.PASSWORD.encode())
            return AuthResult(success=ok, handled=False)

        with socket.socket() as probe_port:
            probe_port.bind(("127.0.0.1", 0))
            self.port = probe_port.getsockname()[1]
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=context,
            require_starttls=True, authenticator=authenticator, auth_required=True,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


def resolve_names(monkeypatch: Any, names: dict[str, str]) -> list[str]:
    """Make ``socket.getaddrinfo`` map ``names`` to addresses; any other name fails.

    IP literals pass through (they resolve without DNS). Returns the list of
    names looked up, in order.
    """
    real = socket.getaddrinfo
    looked: list[str] = []

    def fake(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0,
             flags: int = 0) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        looked.append(name)
        if name in names:
            return real(names[name], port, family, type, proto,
                        flags | socket.AI_NUMERICHOST)
        try:
            return real(name, port, family, type, proto, flags | socket.AI_NUMERICHOST)
        except socket.gaierror:
            raise socket.gaierror(socket.EAI_NONAME, f"test resolver: no {name}") from None

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return looked



# -- a real `certhook serve` process -------------------------------------------------------


def certhook_argv() -> list[str]:
    """How to run this venv's ``certhook`` (its launcher, else ``python -m certhook``)."""
    import sys

    exe = Path(sys.executable).parent / "certhook"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]


class ServeProcess:
    """``certhook serve --config FILE`` in its own process, on free loopback ports.

    ``audit`` is the text of the ``[audit]`` section (short timers for tests),
    ``extra`` more sections. ``conf`` is the file written, for ``certhook
    status/recheck --config``. Stopped with SIGTERM; its stderr is kept in
    ``log`` for a failing assertion to show.
    """

    def __init__(self, tmp_path: Path, db: str, audit: str = "", extra: str = "") -> None:
        import subprocess

        from acmeenv import free_port, wait_for_port

        self.line_port, self.http_port = free_port(), free_port()
        self.line_address = ("127.0.0.1", self.line_port)
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.conf = tmp_path / "server.conf"
        self.conf.write_text(
            f"[server]\ndb = {db}\nline_listen = 127.0.0.1:{self.line_port}\n"
            f"http_listen = 127.0.0.1:{self.http_port}\n[audit]\n{audit}\n{extra}\n")
        self.log = tmp_path / "serve.log"
        self._err = open(self.log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            [*certhook_argv(), "serve", "--config", str(self.conf), "--log-level", "INFO"],
            stdout=subprocess.DEVNULL, stderr=self._err,
        )
        try:
            wait_for_port(self.line_port, 30)
            wait_for_port(self.http_port, 30)
        except BaseException:
            self.stop()
            raise

    def cli(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        """Run ``certhook ARGS --config CONF``: (exit code, stdout, stderr)."""
        import subprocess

        done = subprocess.run([*certhook_argv(), *args, "--config", str(self.conf)],
                              capture_output=True, text=True, timeout=timeout)
        return done.returncode, done.stdout, done.stderr

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self._err.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- targets for the auditor under attack (tests/adversarial, bench/audit.py) ---------------


class ThreadedTlsServer(_Acceptor):
    """A TLS server on loopback, one thread per connection: many probes at once."""

    def __init__(self, context: ssl.SSLContext, host: str = "127.0.0.1", port: int = 0) -> None:
        self.context = context
        self.handshakes = 0
        self._lock = threading.Lock()
        super().__init__(host, backlog=512, port=port)

    def _accepted(self, conn: socket.socket) -> None:
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        try:
            with self.context.wrap_socket(conn, server_side=True) as tls:
                with self._lock:
                    self.handshakes += 1
                tls.recv(1)  # until the prober closes
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()


class Tarpit(_Acceptor):
    """Accepts every connection and never says a word (until closed)."""

    def __init__(self) -> None:
        self.held: list[socket.socket] = []
        super().__init__(backlog=4096)

    def _accepted(self, conn: socket.socket) -> None:
        self.held.append(conn)

    def close(self) -> None:
        """Close the listener and every held connection (a probe stuck on one fails at once)."""
        super().close()
        for conn in self.held:
            conn.close()


def submit_names(address: tuple[str, int], key: str, names: list[str], port: int,
                 chunk: int = 20) -> None:
    """Submit ``names`` on ``port`` over the line protocol, ``chunk`` names a submission."""
    client = LineClient(address)
    try:
        for i in range(0, len(names), chunk):
            answer = client.ask(add_line(key, *names[i:i + chunk], port=port))
            assert answer.startswith(b"ok"), answer
    finally:
        client.close()


class _Rows(list):  # type: ignore[type-arg]
    def fetchone(self) -> Any:
        return self[0] if self else None

    def fetchall(self) -> list[Any]:
        return list(self)


class RawDb:
    """Straight into the database, on either store: the few methods of
    ``sqlite3.Connection`` the tests use, ``?`` placeholders, every statement
    committed at once (``commit`` is there for the tests written for sqlite3)."""

    def __init__(self, db: str) -> None:
        from certhook.server.store import dburl
        from certhook.server.store.conn import open_db

        self._db = open_db(dburl.parse(db), create=False)

    def execute(self, sql: str, args: Any = ()) -> _Rows:
        return _Rows(self._db.execute(sql, args))

    def executemany(self, sql: str, rows: Any) -> None:
        self._db.executemany(sql, list(rows))

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RawDb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect_db(db: str, **_: Any) -> RawDb:
    """:class:`RawDb` for ``db`` (a path or a URL); keywords of sqlite3.connect ignored."""
    return RawDb(db)
