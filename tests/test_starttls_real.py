"""negotiate() against real servers on loopback, then the TLS handshake.

Each server gets its own certificate from a throw-away CA; the test asserts
that the certificate the handshake delivers after the STARTTLS dialogue is
exactly that one (DER equality): the dialogue reached the right server and
left the connection at the very byte where TLS starts.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import realservers
import trustme
from realservers import Cert, Server, ServerError

from certhook.errors import ProtocolError
from certhook.probe.starttls import negotiate

pytestmark = [
    pytest.mark.slow,
    # pyftpdlib still imports asyncore/asynchat on Python < 3.12.
    pytest.mark.filterwarnings("ignore:The asyn.* module is deprecated:DeprecationWarning"),
]


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    with realservers.workdir() as path:
        yield path


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, root: Path) -> str:
    path = root / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def _start(manager: object) -> Iterator[Server]:
    """Enter a server's context manager; a server that cannot start fails the test."""
    try:
        server = manager.__enter__()  # type: ignore[attr-defined]
    except ServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        manager.__exit__(None, None, None)  # type: ignore[attr-defined]


def _cert(ca: trustme.CA, root: Path, label: str) -> Cert:
    return realservers.mint(ca, root / "certs", label)


@pytest.fixture(scope="module")
def smtp(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.aiosmtpd_server(_cert(ca, root, "smtp")))


@pytest.fixture(scope="module")
def dovecot(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.dovecot(root, _cert(ca, root, "dovecot")))


@pytest.fixture(scope="module")
def slapd(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.slapd(root, _cert(ca, root, "slapd")))


@pytest.fixture(scope="module")
def ftp(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.ftp_server(_cert(ca, root, "ftp")))


@pytest.fixture(scope="module")
def prosody(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.prosody(root, _cert(ca, root, "prosody")))


@pytest.fixture(scope="module")
def postgres(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.postgres(root, _cert(ca, root, "postgres")))


@pytest.fixture(scope="module")
def mariadb(ca: trustme.CA, root: Path) -> Iterator[Server]:
    yield from _start(realservers.mariadb(root, _cert(ca, root, "mariadb")))


CASES = [
    ("smtp", "smtp"),  # aiosmtpd
    ("smtp", "submission"),
    ("dovecot", "lmtp"),
    ("dovecot", "imap"),
    ("dovecot", "pop3"),
    ("dovecot", "sieve"),
    ("slapd", "ldap"),
    ("ftp", "ftp"),  # pyftpdlib
    ("prosody", "xmpp"),
    ("prosody", "xmpp-server"),
    ("postgres", "postgres"),
    ("mariadb", "mysql"),
]


def _connect(port: int) -> socket.socket:
    return socket.create_connection((realservers.HOST, port), timeout=5)


@pytest.mark.parametrize(("server", "protocol"), CASES)
def test_negotiate_then_handshake_yields_the_servers_certificate(
    request: pytest.FixtureRequest, ca_file: str, server: str, protocol: str
) -> None:
    running: Server = request.getfixturevalue(server)
    port = running.ports[protocol]
    context = ssl.create_default_context(cafile=ca_file)
    started = time.monotonic()
    with _connect(port) as sock:
        negotiate(sock, protocol, "localhost", started + 10, f"127.0.0.1:{port}")
        with context.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der == running.cert.der
    assert time.monotonic() - started < 10


def test_smtp_server_without_starttls_is_refused(ca_file: str) -> None:
    for server in _start(realservers.aiosmtpd_server(None)):
        port = server.ports["smtp"]
        with _connect(port) as sock, pytest.raises(ProtocolError) as caught:
            negotiate(sock, "smtp", "localhost", time.monotonic() + 10, f"127.0.0.1:{port}")
        assert str(caught.value) == f"127.0.0.1:{port}: smtp: STARTTLS not offered"


def test_ldap_server_without_tls_refuses_starttls(root: Path) -> None:
    for server in _start(realservers.slapd(root, None)):
        port = server.ports["ldap"]
        with _connect(port) as sock, pytest.raises(ProtocolError) as caught:
            negotiate(sock, "ldap", "localhost", time.monotonic() + 10, f"127.0.0.1:{port}")
        assert caught.value.source == f"127.0.0.1:{port}"
        assert "StartTLS refused: resultCode" in caught.value.reason
