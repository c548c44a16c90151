"""The line listener's TLS session over memory BIOs (certhook/server/tlsbio.py), sans-IO."""

from __future__ import annotations

import ssl

import pytest
import trustme
from hypothesis import given
from hypothesis import strategies as st

from certhook.server.tlsbio import TlsSession


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


def _talk(session: TlsSession, client_ctx: ssl.SSLContext, chunk: int) -> bytes:
    """A client handshakes and sends two lines, its bytes fed ``chunk`` at a time."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    plain = b""

    def pump() -> None:
        nonlocal plain
        data = outgoing.read()
        for i in range(0, len(data), chunk):
            plain += session.receive(data[i:i + chunk])
        incoming.write(session.outgoing())

    for _ in range(10):
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            pump()
    pump()
    assert session.handshaken
    client.write(b"command ping\r\n")
    client.write(b"command ping\r\n")
    pump()
    session.send(b"ok pong\r\n")
    incoming.write(session.outgoing())
    assert client.read(100) == b"ok pong\r\n"
    return plain


@pytest.mark.parametrize("chunk", [1, 7, 100000])
def test_handshake_and_lines_whole_or_byte_at_a_time(
        contexts: tuple[ssl.SSLContext, ssl.SSLContext], chunk: int) -> None:
    session = TlsSession(contexts[0])
    assert _talk(session, contexts[1], chunk) == b"command ping\r\n" * 2


def test_no_tls_state_until_the_client_hello_is_whole(
        contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> None:
    session = TlsSession(contexts[0])
    assert session.receive(b"\x16\x03\x01\x02\x00") == b""  # a header for 512 bytes
    assert session.receive(b"\x01" * 200) == b""
    assert not session.started and session.outgoing() == b""


@pytest.mark.parametrize("data", [
    b"command ping\r\n",  # plain text on the TLS port
    b"GET / HTTP/1.1\r\n",
    b"\x16\x02\x00\x00\x01",  # not version 3
    b"\x16\x03\x01\xff\xff",  # a record longer than TLS allows
    b"\x16\x03\x01\x00\x05junkjunk",  # a whole record that is no ClientHello
])
def test_not_tls_is_an_ssl_error(contexts: tuple[ssl.SSLContext, ssl.SSLContext],
                                 data: bytes) -> None:
    with pytest.raises(ssl.SSLError):
        TlsSession(contexts[0]).receive(data)


@given(st.lists(st.binary(max_size=300), max_size=6)
       | st.lists(st.binary(max_size=300), max_size=5).map(lambda c: [b"\x16\x03\x01\x00\x30", *c]))
def test_any_bytes_are_plaintext_or_ssl_error(chunks: list[bytes]) -> None:
    """What a peer sends gives plaintext, nothing yet, or ssl.SSLError: nothing else."""
    session = TlsSession(_SERVER)
    try:
        for chunk in chunks:
            assert session.receive(chunk) == b""  # no handshake can complete from junk
    except ssl.SSLError:
        pass


_SERVER = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
trustme.CA().issue_cert("127.0.0.1").configure_cert(_SERVER)
