"""negotiate(), the socket pump, on loopback: deadline, closes, resets, late data.

The servers here are threads on 127.0.0.1 that misbehave on purpose: stay
silent, trickle bytes, hang up, reset, or send data behind the go-ahead.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import pytest
from starttls_peers import PG_REQUEST, SERVER

from certhook.errors import ProtocolError, RemoteError, RemoteTimeout
from certhook.probe.starttls import negotiate


@contextmanager
def peer(behave: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback server that runs ``behave`` on one connection; yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    finished = threading.Event()

    def run() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                behave(conn)
            except OSError:
                pass  # the client hung up first: what the test may well want
            finished.wait(10)  # hold the connection open until the test is over

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        finished.set()
        thread.join(12)
        listener.close()


def read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        byte = conn.recv(1)
        if not byte:
            break
        line += byte
    return line


def pump(port: int, protocol: str = "smtp", seconds: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=3)
    try:
        negotiate(sock, protocol, SERVER, time.monotonic() + seconds, f"127.0.0.1:{port}")
    except BaseException:
        sock.close()
        raise
    return sock


def test_pump_plays_a_fragmented_dialogue_and_restores_the_timeout() -> None:
    heard: list[bytes] = []

    def smtp(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in (b"220-mail.exa", b"mple\r\n22", b"0 ready\r\n"):
            conn.sendall(piece)
            time.sleep(0.02)
        heard.append(read_line(conn))
        for piece in (b"250-mail.example\r\n250-STA", b"RTTLS\r\n250 OK\r\n"):
            conn.sendall(piece)
            time.sleep(0.02)
        heard.append(read_line(conn))
        conn.sendall(b"220 go ahead\r\n")

    with peer(smtp) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=7)
        with sock:
            negotiate(sock, "smtp", SERVER, time.monotonic() + 5, f"127.0.0.1:{port}")
            assert sock.gettimeout() == 7
    # RFC 5321 section 4.1.3: with no name of its own, the client's address literal.
    assert heard == [b"EHLO [127.0.0.1]\r\n", b"STARTTLS\r\n"]


def test_silent_server_times_out_at_the_deadline() -> None:
    with peer(lambda conn: None) as port:
        started = time.monotonic()
        with pytest.raises(RemoteTimeout) as caught:
            pump(port, seconds=0.5)
        elapsed = time.monotonic() - started
    # not early (load only makes it later); the upper bound only catches a hang
    assert 0.45 <= elapsed < 30
    assert str(caught.value) == f"127.0.0.1:{port}: no smtp STARTTLS go-ahead before the deadline"


def test_silent_server_after_our_request_times_out() -> None:
    def listen(conn: socket.socket) -> None:
        conn.recv(100)

    with peer(listen) as port, pytest.raises(RemoteTimeout):
        pump(port, "ldap", seconds=0.3)


def test_trickling_server_cannot_stretch_the_deadline() -> None:
    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"220-")
        for _ in range(60):
            time.sleep(0.05)
            try:
                conn.sendall(b"x")
            except OSError:
                return

    with peer(trickle) as port:
        started = time.monotonic()
        with pytest.raises(RemoteTimeout):
            pump(port, seconds=0.5)
        assert time.monotonic() - started < 1.5


def test_deadline_already_past() -> None:
    with peer(lambda conn: conn.sendall(b"220 hi\r\n")) as port, pytest.raises(RemoteTimeout):
        pump(port, seconds=-1)


@pytest.mark.parametrize("behave", [
    lambda conn: None,
    lambda conn: conn.sendall(b"220-mail.example\r\n"),
    lambda conn: conn.sendall(b"220 hi\r\n") or (read_line(conn) and None),
], ids=["at-once", "mid-reply", "after-our-command"])
def test_early_close_is_a_remote_error(behave: Callable[[socket.socket], None]) -> None:
    def close(conn: socket.socket) -> None:
        behave(conn)
        conn.shutdown(socket.SHUT_RDWR)

    with peer(close) as port, pytest.raises(RemoteError) as caught:
        pump(port)
    assert not isinstance(caught.value, (RemoteTimeout, ProtocolError))
    assert str(caught.value) == f"127.0.0.1:{port}: connection closed during the smtp dialogue"


def test_reset_is_a_remote_error() -> None:
    def rst(conn: socket.socket) -> None:
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with peer(rst) as port, pytest.raises(RemoteError) as caught:
        pump(port, "ldap")
    assert str(caught.value).startswith(f"127.0.0.1:{port}: ")
    assert not isinstance(caught.value, (RemoteTimeout, ProtocolError))


def test_refusal_through_the_pump_names_the_source() -> None:
    with peer(lambda conn: conn.sendall(b"N")) as port, pytest.raises(ProtocolError) as caught:
        pump(port, "postgres")
    assert caught.value.source == f"127.0.0.1:{port}"
    assert str(caught.value) == f"127.0.0.1:{port}: postgres: server does not support SSL"


def test_injection_in_the_same_segment_through_the_pump() -> None:
    def inject(conn: socket.socket) -> None:
        conn.recv(8)
        conn.sendall(b"S\x16\x03\x03\x00\x02hi")

    with peer(inject) as port, pytest.raises(ProtocolError, match="after the go-ahead"):
        pump(port, "postgres")


class LateDataSocket:
    """A stand-in socket whose peer sent its injection just after the go-ahead."""

    def __init__(self, late: bytes | None) -> None:
        self.late = late
        self.sent = b""
        self.timeout: float | None = 3.0

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 40000)

    def gettimeout(self) -> float | None:
        return self.timeout

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def setblocking(self, flag: bool) -> None:
        self.timeout = None if flag else 0.0

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, size: int, flags: int = 0) -> bytes:
        if flags & socket.MSG_PEEK:
            if self.late is None:
                raise BlockingIOError
            return self.late[:size]
        return b"S"


@pytest.mark.parametrize(("late", "error", "message"), [
    (b"\x15", ProtocolError, "postgres: data after the go-ahead, before TLS started"),
    (b"", RemoteError, "connection closed after the postgres go-ahead"),
])
def test_data_that_arrives_after_the_go_ahead_segment(
    late: bytes, error: type, message: str
) -> None:
    fake = LateDataSocket(late)
    with pytest.raises(error, match=message):
        negotiate(cast(socket.socket, fake), "postgres", SERVER, time.monotonic() + 1, "db:5432")
    assert fake.sent == PG_REQUEST
    assert fake.timeout == 3.0


def test_quiet_server_after_the_go_ahead() -> None:
    fake = LateDataSocket(None)
    negotiate(cast(socket.socket, fake), "postgres", SERVER, time.monotonic() + 1, "db:5432")
    assert fake.timeout == 3.0


def test_eof_right_after_the_go_ahead_on_a_real_socket() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(b"S")
        theirs.shutdown(socket.SHUT_WR)
        with pytest.raises(RemoteError, match="closed after the postgres go-ahead"):
            negotiate(ours, "postgres", SERVER, time.monotonic() + 1, "db.example:5432")


def test_tls_through_the_pump_exchanges_nothing() -> None:
    heard: list[bytes] = []

    def listen(conn: socket.socket) -> None:
        conn.settimeout(0.3)
        try:
            heard.append(conn.recv(100))
        except OSError:
            heard.append(b"(nothing)")

    with peer(listen) as port:
        pump(port, "tls").close()
    assert heard in ([b"(nothing)"], [b""])
