"""The standard library's WSGI server, threaded, for ``certhook serve``.

wsgiref is single-threaded and logs every request to stderr; this wraps it
with ``ThreadingMixIn``, a socket timeout (a client that sends half a body
and stops costs one thread for at most that long), a connection limit, and
logging through the ``logging`` module.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import threading
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

__all__ = ["HttpServer"]

log = logging.getLogger("certhook.http")


class _Handler(WSGIRequestHandler):
    timeout = 30  # seconds; StreamRequestHandler sets it on the socket

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def address_string(self) -> str:
        return str(self.client_address[0])


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256
    max_threads = 256

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(self.max_threads)
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Bounded: past max_threads busy requests, new ones wait in the backlog.
        self._slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class _ThreadingWSGIServer6(_ThreadingWSGIServer):
    address_family = socket.AF_INET6


class HttpServer:
    """Serve a WSGI app on host:port in a background thread."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        server_class = _ThreadingWSGIServer6 if ":" in host else _ThreadingWSGIServer
        self._server = make_server(host, port, app, server_class=server_class,
                                   handler_class=_Handler)
        bound = self._server.server_address
        self.address = (str(bound[0]), int(bound[1]))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="certhook-http", daemon=True,
        )

    def start(self) -> None:
        self._thread.start()
        log.info("listening for HTTP on %s:%d", *self.address)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
