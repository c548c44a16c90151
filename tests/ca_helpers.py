"""A CA's web side on loopback for the ARI and CRL tests: a threaded http.server.

``CaWeb`` serves a table of routes, path -> (status, headers, body), that a
test may change while it runs; a body may be a callable (called per
request) or the ``SLOW`` marker (the server trickles a byte every 0.2 s,
forever, until the test ends). Every request path is recorded in ``hits``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

SLOW = object()
OMIT = "(omit)"  # a header value: send no such header (Content-Length: read to close)
Body = Union[bytes, Callable[[], bytes], object]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        web = self.server.web
        web.hits.append(self.path)
        route = web.routes.get(self.path)
        if route is None:
            self.send_response(404)
            self.send_header("Content-Length", "9")
            self.end_headers()
            self.wfile.write(b"not found")
            return
        status, headers, body = route
        if body is SLOW:
            self.send_response(status)
            self.end_headers()
            while not web.closing.is_set():
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.2)
            return
        data = body() if callable(body) else body
        assert isinstance(data, bytes)
        self.send_response(status)
        for name, value in headers.items():
            if value != OMIT:
                self.send_header(name, value)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    web: CaWeb


class CaWeb:
    """The loopback web server; ``url(path)`` is where a path is served."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, tuple[int, dict[str, str], Body]] = {}
        self.hits: list[str] = []
        self.closing = threading.Event()
        self._server = _Server((host, 0), _Handler)
        self._server.web = self
        self.port = self._server.server_address[1]
        self.host = host
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> CaWeb:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def issue_with_crl(ca: Any, name: str, crl_urls: tuple[str, ...], serial: int | None = None,
                   days: float = 90) -> Any:
    """A leaf of ``ca`` (probe_helpers.CA) naming ``crl_urls`` in cRLDistributionPoints."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from probe_helpers import NOW, Issued, leaf_key

    key = leaf_key("ec256")
    points = [x509.DistributionPoint([x509.UniformResourceIdentifier(url) for url in crl_urls],
                                     None, None, None)] if crl_urls else []
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)]))
        .issuer_name(ca.name).public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                       critical=False)
    )
    if points:
        builder = builder.add_extension(x509.CRLDistributionPoints(points), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key, ca)


def make_crl(ca: Any, revoked: dict[int, Any] = {}, *, signing_key: Any = None,  # noqa: B006
             this_update: Any = None, next_update: Any = None, aki_key: Any = None,
             extensions: tuple[Any, ...] = ()) -> bytes:
    """A DER CRL of ``ca``: ``revoked`` maps serial -> ReasonFlags (or None)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.serialization import Encoding
    from probe_helpers import NOW

    builder = (
        x509.CertificateRevocationListBuilder().issuer_name(ca.name)
        .last_update(this_update or NOW - dt.timedelta(hours=1))
        .next_update(next_update or NOW + dt.timedelta(days=7))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            (aki_key or signing_key or ca.key).public_key()), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    for serial, reason in revoked.items():
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(
            NOW - dt.timedelta(days=2))
        if reason is not None:
            entry = entry.add_extension(x509.CRLReason(reason), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    crl = builder.sign(signing_key or ca.key, hashes.SHA256())
    return crl.public_bytes(Encoding.DER)
