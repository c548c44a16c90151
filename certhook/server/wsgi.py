"""The HTTP side of the audit server, as a WSGI application.

``certhook serve`` runs it on the standard library's wsgiref; any WSGI
server can run it instead::

    CERTHOOK_CONFIG=/etc/certhook/server.conf gunicorn 'certhook.server.wsgi:make_app()'

Routes: ``POST /api/v1/submissions`` and the KeyChest ``POST
/api/v1.0/servers/add`` (submissions, acknowledged once durable, like the
line protocol), ``GET /api/v1/domains`` and ``GET /api/v1/domains/NAME``
(Bearer key; paginated with ``limit`` and ``cursor``), the report page
``GET /`` (HTTP Basic: account name and key) and ``GET /metrics``
(Prometheus, :mod:`certhook.server.metrics`; Basic or Bearer, or none from
loopback with ``[server] metrics_public = loopback``). A key is never taken from a
URL: a query naming one is refused. Failed key checks are throttled
(:mod:`certhook.server.throttle`). An unforeseen exception is logged with a
request id (no key, no query string) and answered 500 with the same id.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
import traceback
from collections.abc import Iterable
from typing import IO, Any, Callable, Union
from urllib.parse import parse_qsl, unquote

from certhook.errors import ParseError
from certhook.protocol import Request, Response
from certhook.server import queries, store
from certhook.server.committer import Committer, GroupCommitter, Job, WaitSink
from certhook.server.config import ServerConfig, load_config
from certhook.server.httpserver import SECRET_PARAMS, escape
from certhook.server.throttle import Throttle, message

__all__ = ["application", "make_app"]

StartResponse = Callable[..., Any]
_HTTP_STATUS = {"syntax": 400, "auth": 401, "limit": 429, "unavailable": 503, "internal": 500}
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
            429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}
_WAIT = 30.0
_BASIC_REALM = ("WWW-Authenticate", 'Basic realm="certhook", charset="UTF-8"')
log = logging.getLogger("certhook.http")
# On every answer, pages and API alike: nothing cached (the pages are behind a
# login), no framing (clickjacking), no Referer leaving with a target's name,
# no type sniffing. The pages' CSP (report.CSP) allows no script at all.
_SECURITY_HEADERS = (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff"),
                     ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"))
Answer = tuple[int, list[tuple[str, str]], Union[bytes, IO[bytes]]]
_CHUNK = 1 << 16


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def _where(exc: BaseException) -> str:
    """Where an exception came from (file:line function, innermost last), without its
    message or any local value: those may hold what a client sent, a key included."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    return " < ".join(f"{os.path.basename(f.filename)}:{f.lineno} {f.name}"
                      for f in reversed(frames))


class AuditApp:
    """The WSGI callable. ``committer`` is shared with the line listeners when in-process."""

    def __init__(self, config: ServerConfig, committer: Committer | None = None,
                 throttle: Throttle | None = None) -> None:
        self.config = config
        self.throttle = throttle or Throttle()
        self._own: GroupCommitter | None = None
        if committer is None:
            committer = self._own = GroupCommitter(
                config.db, config.first_probe_delay, max_ports=config.max_ports_per_submission,
                max_targets=config.max_targets_per_account, vantages=config.vantages_for)
        self.committer: Committer = committer
        self._started = self._own is None
        self._lock = threading.Lock()
        self._store = store.open_store(config.db)  # fail early on a bad path; the schema

    def close(self) -> None:
        if self._own is not None and self._started:
            self._own.stop()
        self._store.close()

    def _conn(self) -> store.Store:
        """The store (each thread has its own connection to it)."""
        return self._store

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/") or "/"
        try:
            query = environ.get("QUERY_STRING", "")
            if any(k.strip().lower() in SECRET_PARAMS for k, _ in parse_qsl(query, True)):
                raise _HttpError(400, "syntax", "an API key is never accepted in a URL;"
                                 " send it in the Authorization header")
            status, headers, body = self._route(method, path, environ)
        except _HttpError as exc:
            status, headers, body = self._json_error(exc)
        except Exception as exc:  # anything unforeseen: a 500, the server stays up
            request_id = secrets.token_hex(8)
            log.error("request %s: %s %s failed: %s at %s", request_id, escape(method[:16]),
                      escape(path[:200]), type(exc).__name__, _where(exc))
            status, headers, body = self._json_error(_HttpError(
                500, "internal", f"server error; request id {request_id}",
                [("X-Request-Id", request_id)]))
        chunks: Iterable[bytes] = [body] if isinstance(body, bytes) else ()
        if isinstance(body, bytes):
            length = len(body)
        else:  # a spooled file (GET /metrics): sent a chunk at a time
            length = body.seek(0, os.SEEK_END)
            body.seek(0)
            chunks = _chunks(body)
        headers = [("Content-Length", str(length)), *_SECURITY_HEADERS, *headers]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        return chunks

    def _route(self, method: str, path: str, environ: dict[str, Any]
               ) -> Answer:
        if path == "/api/v1/submissions":
            self._allow(method, "POST")
            return self._submit(environ, keychest=False)
        if path == "/api/v1.0/servers/add":
            self._allow(method, "POST")
            return self._submit(environ, keychest=True)
        if path == "/api/v1/domains" or path.startswith("/api/v1/domains/"):
            self._allow(method, "GET")
            account = self._bearer(environ)
            return self._listing(environ, path, account)
        if path == "/api/v1/recheck":
            self._allow(method, "POST")
            return self._recheck(environ)
        if path == "/api/v1/targets":
            self._allow(method, "GET")
            return self._targets(environ, self._bearer(environ))
        if path in ("/api/v1/targets/remove", "/api/v1/targets/mute", "/api/v1/targets/unmute"):
            self._allow(method, "POST")
            return self._target_action(environ, path.rsplit("/", 1)[1])
        if path in ("/", "/index.html", "/target"):
            self._allow(method, "GET")
            return self._report(environ, path)
        if path == "/metrics":
            self._allow(method, "GET")
            return self._metrics(environ)
        if path == "/healthz":
            ok = self.committer.healthy
            return (200 if ok else 503), [("Content-Type", "text/plain")], (
                b"ok\n" if ok else b"unavailable\n")
        raise _HttpError(404, "syntax", "no such resource")

    def _listing(self, environ: dict[str, Any], path: str, account: str) -> Answer:
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), True))
        after = None
        if params.get("cursor"):
            try:
                after = queries.decode_cursor(params["cursor"])
            except ParseError:
                raise _HttpError(400, "syntax", "bad cursor: use the 'next' of the last page"
                                 ) from None
        conn = self._conn()
        now = time.time()
        if path == "/api/v1/domains":
            limit = _count(params, "limit", queries.PAGE_DEFAULT, queries.PAGE_MAX)
            rows, cursor = queries.target_page(conn, account, limit, after)
            data: Any = {"ok": True, "account": account, **_summary(conn, account, now, after),
                         "domains": [queries.target_json(r, now) for r in rows]}
        else:
            domain = unquote(path[len("/api/v1/domains/"):]).lower().rstrip(".")
            limit = _count(params, "limit", queries.PAGE_DEFAULT // 10, queries.PAGE_MAX // 10)
            history = _count(params, "history", queries.HISTORY_DEFAULT, queries.HISTORY_MAX)
            targets, cursor = queries.domain_history(conn, account, domain, history, limit, after)
            if not targets and after is None:
                raise _HttpError(404, "syntax", f"no target {domain[:100]!r} in this account")
            data = {"ok": True, "domain": domain,
                    **_summary(conn, account, now, after, domain), "targets": targets}
        data["next"] = queries.encode_cursor(cursor) if cursor else None
        return 200, [("Content-Type", "application/json")], _dumps(data)

    def _authenticate(self, environ: dict[str, Any], key: str, name: str | None = None
                      ) -> str | None:
        """The account of ``key`` (and ``name``), through the throttle: 429 when this
        address (or account name) has failed too often, a failure counted if wrong."""
        address = str(environ.get("REMOTE_ADDR", ""))
        wait = self.throttle.check(address, name, key)
        if wait:
            raise _HttpError(429, "limit", message(wait), [("Retry-After", _seconds(wait))])
        account = None
        try:
            account = self._conn().authenticate(key, name)
        finally:
            self.throttle.done(address, key, account is not None, name)
        return account

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed:
            raise _HttpError(405, "syntax", f"use {allowed}")

    def _bearer(self, environ: dict[str, Any]) -> str:
        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise _HttpError(401, "auth", "missing API key (Authorization: Bearer KEY)")
        account = self._authenticate(environ, key.strip())
        if account is None:
            raise _HttpError(401, "auth", "unknown or revoked API key")
        return account

    def _read_json(self, environ: dict[str, Any]) -> Any:
        try:
            length = int(environ.get("CONTENT_LENGTH") or "-1")
        except ValueError:
            raise _HttpError(400, "syntax", "bad Content-Length") from None
        if length > self.config.max_body:
            raise _HttpError(413, "syntax", f"body over {self.config.max_body} bytes")
        if length < 0:
            raise _HttpError(411, "syntax", "Content-Length required")
        data = environ["wsgi.input"].read(length)
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise _HttpError(400, "syntax", "body is not JSON") from None

    def _submit(self, environ: dict[str, Any], keychest: bool
                ) -> Answer:
        body = self._read_json(environ)
        source = str(environ.get("REMOTE_ADDR", "http"))
        if keychest:
            if not isinstance(body, dict) or not isinstance(body.get("api_key"), str):
                return _keychest(401, "api_key missing")
            key = body["api_key"]
            body = {k: v for k, v in body.items() if k != "api_key"}
        else:
            header = environ.get("HTTP_AUTHORIZATION", "")
            scheme, _, key = header.partition(" ")
            if scheme.lower() != "bearer" or not key.strip():
                raise _HttpError(401, "auth", "missing API key (Authorization: Bearer KEY)")
            key = key.strip()
        try:
            request = Request.from_json(body, key, source)
        except ParseError as exc:
            if keychest:
                return _keychest(400, exc.reason)
            raise _HttpError(400, "syntax", exc.reason) from None
        wait = self.throttle.check(source, None, key)
        if wait:
            if keychest:
                status, headers, answer = _keychest(429, message(wait))
                return status, [*headers, ("Retry-After", _seconds(wait))], answer
            raise _HttpError(429, "limit", message(wait), [("Retry-After", _seconds(wait))])
        response = Response.error("internal", "not committed")
        try:
            response = self._commit(request, source)
        finally:
            self.throttle.done(source, key, response.code != "auth")
        if keychest:
            if response.ok:
                return 200, [("Content-Type", "application/json")], _dumps({"status": "success"})
            return _keychest(_HTTP_STATUS.get(response.code or "", 500), response.text)
        if not response.ok:
            code = response.code or "internal"
            # not stored: the client keeps it and tries again (RFC 9110 10.2.3)
            later = [("Retry-After", "10")] if code == "unavailable" else []
            raise _HttpError(_HTTP_STATUS.get(code, 500), code, response.text, later)
        data = {"ok": True, "id": response.get("id"), "domains": int(response.get("domains") or 0)}
        return 200, [("Content-Type", "application/json")], _dumps(data)

    def _commit(self, request: Request, source: str) -> Response:
        with self._lock:
            if not self._started and self._own is not None:
                self._own.start()
                self._started = True
        sink = WaitSink()
        job = Job(request, "http", source, sink)
        self.committer.submit(job)
        if not sink.wait(_WAIT) or job.response is None:
            return Response.error("unavailable", "the database did not answer in time")
        return job.response

    def _recheck(self, environ: dict[str, Any]) -> Answer:
        """``{"target": "HOST:PORT/PROTOCOL"}`` (or a name) or ``{"all": true}``: probe now."""

        from certhook.server import recheck

        account = self._bearer(environ)
        body = self._read_json(environ)
        if not isinstance(body, dict) or (body.get("all") is True) == ("target" in body):
            raise _HttpError(400, "syntax",
                             'send {"target": "HOST:PORT/PROTOCOL"} or {"all": true}')
        try:
            selector = None if body.get("all") is True else recheck.parse_selector(
                str(body["target"]))
        except ParseError as exc:
            raise _HttpError(400, "syntax", exc.reason) from None
        now = time.time()
        rows = recheck.mark_due(self._conn(), account, selector, now)
        if not rows:
            raise _HttpError(404, "syntax", "no such target in this account")
        data = {"ok": True, "requested": queries.iso(now), "targets": [
            {"domain": r["domain"], "port": r["port"], "protocol": r["protocol"]} for r in rows]}
        return 200, [("Content-Type", "application/json")], _dumps(data)

    def _targets(self, environ: dict[str, Any], account: str) -> Answer:
        """This account's targets with their mute, a page at a time (as /api/v1/domains)."""

        from certhook.server import targets

        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), True))
        try:
            after = queries.decode_cursor(params["cursor"]) if params.get("cursor") else None
        except ParseError:
            raise _HttpError(400, "syntax", "bad cursor: use the 'next' of the last page"
                             ) from None
        limit = _count(params, "limit", queries.PAGE_DEFAULT, queries.PAGE_MAX)
        rows = self._conn().list_targets(account, limit + 1, after)
        now = time.time()
        last = rows[limit - 1] if len(rows) > limit else None
        data = {"ok": True, "account": account,
                **_summary(self._conn(), account, now, after),
                "targets": [targets.target_json(r, now) for r in rows[:limit]],
                "next": None if last is None else queries.encode_cursor(
                    (str(last["domain"]), int(last["port"]), str(last["protocol"])))}
        return 200, [("Content-Type", "application/json")], _dumps(data)

    def _target_action(self, environ: dict[str, Any], action: str) -> Answer:
        """``{"target": "HOST:PORT/PROTOCOL"}`` (or a name; with ``"until"`` to mute):
        remove, mute or unmute this account's matching targets."""

        from certhook.server import recheck, targets

        account = self._bearer(environ)
        body = self._read_json(environ)
        if (not isinstance(body, dict) or not isinstance(body.get("target"), str)
                or (action == "mute") != isinstance(body.get("until"), str)):
            until = ', "until": "2026-12-24T00:00Z" or "2d"' if action == "mute" else ""
            raise _HttpError(400, "syntax", f'send {{"target": "HOST:PORT/PROTOCOL"{until}}}')
        now = time.time()
        try:
            selector = recheck.parse_selector(body["target"])
            until_time = targets.parse_until(body["until"], now) if action == "mute" else None
        except ParseError as exc:
            raise _HttpError(400, "syntax", exc.reason) from None
        conn = self._conn()
        rows = conn.find_targets(account, selector.domain, selector.port, selector.protocol)
        if not rows:
            raise _HttpError(404, "syntax", "no such target in this account")
        if action == "remove":
            conn.remove_targets([r.id for r in rows])
        else:
            conn.mute_targets([r.id for r in rows], until_time)
        data = {"ok": True, "action": action, "muted_until": queries.iso(until_time),
                "targets": [{"domain": r["domain"], "port": r["port"],
                             "protocol": r["protocol"]} for r in rows]}
        return 200, [("Content-Type", "application/json")], _dumps(data)

    def _report(self, environ: dict[str, Any], path: str) -> Answer:
        from certhook.server import report

        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        account = None
        if scheme.lower() == "basic":
            name, key = _basic(value)
            try:
                account = self._authenticate(environ, key, name)
            except _HttpError as exc:  # throttled
                return exc.status, [("Content-Type", "text/plain; charset=utf-8"),
                                    *exc.headers], (exc.message + "\n").encode()
        if account is None:
            return 401, [("Content-Type", "text/plain; charset=utf-8"), _BASIC_REALM], (
                b"Log in with your account name and API key.\n")
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), True))
        if path == "/target":
            from certhook.server import report_detail

            text = params.get("id", "")
            row = queries.account_target(self._conn(), account, int(text[:18])) if (
                text.isdigit() and text.isascii()) else None
            if row is None:  # another account's target is as absent as a missing one
                return 404, [("Content-Type", "text/plain; charset=utf-8")], (
                    b"No such target in this account.\n")
            html = report_detail.render_detail(self._conn(), row, grace=self.config.grace)
        else:
            html = report.render_page(self._conn(), account, params, grace=self.config.grace)
        return 200, [("Content-Type", "text/html; charset=utf-8"),
                     ("Content-Security-Policy", report.CSP)], html.encode("utf-8")

    def _metrics(self, environ: dict[str, Any]) -> Answer:
        """The Prometheus exposition: an account's targets with its key (Basic or
        Bearer), every account's without one from loopback if ``metrics_public``."""
        from certhook.server import metrics

        header = environ.get("HTTP_AUTHORIZATION", "")
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        account: str | None = None
        every = False
        if scheme == "basic":
            name, key = _basic(value)
            account = self._authenticate(environ, key, name)
        elif scheme == "bearer" and value.strip():
            account = self._authenticate(environ, value.strip())
        elif not header and self.config.metrics_public == "loopback":
            every = _loopback(str(environ.get("REMOTE_ADDR", "")))
        if account is None and not every:
            raise _HttpError(401, "auth", "log in with HTTP Basic (account name and key) or"
                             " a Bearer key", [_BASIC_REALM])
        queued = getattr(self.committer, "queued", None)
        body = metrics.render(self._conn(), account,
                              queued=queued if isinstance(queued, int) else None,
                              throttled=self.throttle.refused)
        return 200, [("Content-Type", metrics.CONTENT_TYPE)], body

    @staticmethod
    def _json_error(exc: _HttpError) -> Answer:
        body = _dumps({"ok": False, "error": exc.code, "message": exc.message})
        headers = [("Content-Type", "application/json"), *exc.headers]
        if exc.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="certhook"'))
        return exc.status, headers, body


def _summary(conn: Any, account: str, now: float, after: queries.Cursor | None,
             domain: str | None = None) -> dict[str, Any]:
    """The listing's summary (targets per state, total, muted), before its first page.

    Only the first page (no cursor) has it: the counts read every target of the
    account, and a walk of 100 pages paid that 100 times (4.0 s grew to 9.1 s
    at 100,000 targets, ``bench/server.py read``).
    """
    if after is not None:
        return {}
    return {"summary": queries.listing_summary(conn, account, now, domain)}


def _basic(value: str) -> tuple[str, str]:
    """Account name and key from HTTP Basic credentials; empty strings if unreadable.

    The header reaches WSGI as latin-1 text (PEP 3333): anything not base64
    of UTF-8 is a failed login (401), never an exception (it was a 500).
    """
    try:
        decoded = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
    except ValueError:  # UnicodeError and binascii.Error are ValueErrors
        return "", ""
    name, _, key = decoded.partition(":")
    return name, key


def _loopback(address: str) -> bool:
    """Whether the peer's address is loopback (127.0.0.0/8, ::1, or ::ffff:127.x)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool((mapped or ip).is_loopback)


def _chunks(body: IO[bytes]) -> Iterable[bytes]:
    try:
        while True:
            chunk = body.read(_CHUNK)
            if not chunk:
                return
            yield chunk
    finally:
        body.close()


def _count(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    text = params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not text.isascii() or not 1 <= int(text[:12]) <= maximum:
        raise _HttpError(400, "syntax", f"{name} must be a whole number from 1 to {maximum}")
    return int(text)


def _seconds(wait: float) -> str:
    return str(max(1, math.ceil(wait)))


def _keychest(status: int, message: str) -> Answer:
    data = {"status": "error", "message": message}
    return status, [("Content-Type", "application/json")], _dumps(data)


def _dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8") + b"\n"


def make_app(config: ServerConfig | None = None, committer: Committer | None = None,
             throttle: Throttle | None = None) -> AuditApp:
    """The WSGI application; without a config, from ``$CERTHOOK_CONFIG`` and ``$CERTHOOK_DB``."""
    if config is None:
        config = load_config(os.environ.get("CERTHOOK_CONFIG") or None)
        config = config.with_overrides(db=os.environ.get("CERTHOOK_DB") or None)
    return AuditApp(config, committer, throttle)


_default: AuditApp | None = None
_default_lock = threading.Lock()


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """A module-level WSGI callable (``certhook.server.wsgi:application``), built on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = make_app()
    return _default(environ, start_response)
