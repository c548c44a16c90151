"""The whole audit server in one object: writer, listeners, auditor, notifier.

:class:`AuditServer` starts every part in its own thread (the line
listeners share one asyncio event loop) and stops them in reverse order.
``certhook serve`` is this plus signal handling; the tests and the
benchmark use it directly, with port 0 for ephemeral ports.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from typing import Any

from certhook.errors import LocalError, UsageError
from certhook.server import metrics
from certhook.server.audit import Auditor, ProbeFunction, default_node
from certhook.server.committer import GroupCommitter
from certhook.server.config import ServerConfig
from certhook.server.lineserver import LineServer
from certhook.server.notify import Notifier

__all__ = ["AuditServer", "tls_context"]

log = logging.getLogger("certhook.server")


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """The TLS listener's context: TLS 1.2 or later, the given chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise LocalError(f"{cert}: cannot load the TLS certificate and key: {exc}") from None
    return context


class AuditServer:
    """Start with :meth:`start`, stop with :meth:`stop`; addresses are set once started."""

    def __init__(self, config: ServerConfig, probe_fn: ProbeFunction | None = None,
                 audit: bool = True) -> None:
        if (config.tls_listen or config.https_listen) and not (config.tls_cert and config.tls_key):
            raise UsageError("a TLS listener needs tls_cert and tls_key")
        self.config = config
        # this process among the nodes on one database: in the leases, logs and /metrics
        self.node = config.node or default_node()
        self.notifier = Notifier(config, node=self.node)
        self.auditor: Auditor | None = (
            Auditor(config, probe_fn, on_notice=self.notifier.wake, node=self.node)
            if audit else None
        )
        self.committer = GroupCommitter(
            config.db, config.first_probe_delay,
            on_commit=self.auditor.wake if self.auditor else None,
            max_ports=config.max_ports_per_submission,
            max_targets=config.max_targets_per_account, vantages=config.vantages_for,
        )
        self.line: LineServer | None = None
        self.http: Any = None
        self.https: Any = None
        self.line_address: tuple[str, int] | None = None
        self.tls_address: tuple[str, int] | None = None
        self.http_address: tuple[str, int] | None = None
        self.https_address: tuple[str, int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def start(self) -> AuditServer:
        """Start every part; on any failure, stop what started and raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        metrics.NODE.set(self.node)
        log.info("node %s (lease %gs)", self.node, cfg.lease)
        self.committer.start()
        if cfg.line_listen or cfg.tls_listen:
            self._start_line()
        if cfg.http_listen or cfg.https_listen:
            self._start_http()
        self.notifier.start()
        if self.auditor is not None:
            self.auditor.start()

    def _start_http(self) -> None:
        from certhook.server.httpserver import HttpServer
        from certhook.server.wsgi import make_app

        cfg = self.config
        # One app for both listeners, and one throttle with the line listeners.
        app = make_app(cfg, self.committer, self.line.throttle if self.line else None)
        https = tls_context(cfg.tls_cert, cfg.tls_key) if (
            cfg.https_listen and cfg.tls_cert and cfg.tls_key) else None
        for attr, listen, context in (("http", cfg.http_listen, None),
                                      ("https", cfg.https_listen, https)):
            if not listen:
                continue
            try:
                server = HttpServer(app, *listen, ssl_context=context,
                                    max_connections=cfg.max_connections, max_body=cfg.max_body,
                                    max_per_address=cfg.max_connections_per_address)
            except OSError as exc:
                raise LocalError(f"cannot listen on {listen[0]}:{listen[1]}: {exc.strerror}"
                                 ) from None
            setattr(self, attr, server)
            server.start()
            setattr(self, f"{attr}_address", server.address)

    def _start_line(self) -> None:
        cfg = self.config
        context = tls_context(cfg.tls_cert, cfg.tls_key) if (
            cfg.tls_listen and cfg.tls_cert and cfg.tls_key) else None
        loop = self._loop = asyncio.new_event_loop()
        self.line = LineServer(self.committer, cfg.idle_timeout, cfg.max_connections,
                               cfg.max_connections_per_address, cfg.max_pending_per_connection)
        self._loop_thread = threading.Thread(target=loop.run_forever, name="certhook-line",
                                             daemon=True)
        self._loop_thread.start()

        async def listen() -> None:
            assert self.line is not None
            if cfg.line_listen:
                self.line_address = await self.line.start(*cfg.line_listen)
            if cfg.tls_listen and context is not None:
                self.tls_address = await self.line.start(*cfg.tls_listen, ssl_context=context)

        try:
            asyncio.run_coroutine_threadsafe(listen(), loop).result(30)
        except OSError as exc:
            raise LocalError(f"cannot listen for submissions: {exc.strerror or exc}") from None

    def stop(self) -> None:
        """Stop listening, finish what is queued, stop auditing and notifying."""
        for attr in ("http", "https"):
            if getattr(self, attr) is not None:
                getattr(self, attr).stop()
                setattr(self, attr, None)
        if self._loop is not None and self.line is not None:
            try:
                asyncio.run_coroutine_threadsafe(self.line.stop(), self._loop).result(10)
            except Exception:  # stopping anyway
                log.exception("stopping the line listeners")
        self.committer.stop()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._loop_thread is not None:
                self._loop_thread.join(5)
            self._loop.close()
            self._loop = None
        if self.auditor is not None:
            self.auditor.stop()
        self.notifier.stop()

    def __enter__(self) -> AuditServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
