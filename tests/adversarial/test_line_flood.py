"""Floods on the line protocol: blank lines, junk, over-long lines, replies never read.

The attack that found issue 9.2: ``yes '' | socat - TCP:127.0.0.1:10023``
made a valid ``ping`` take 3-25 s, amplified 69x (each 1-byte blank line
got a 69-byte error) and took the server from 29 to 488 MB. Each test
floods from attacker threads while a valid client submits on its own
connections, and asserts what that client and the operator see.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable

import pytest
from line_helpers import LONG, Serve, ask, read_until_closed

DURATION = 20.0 if LONG else 2.5  # seconds of flood
ATTACKERS = 4 if LONG else 2  # flooding connections at a time
LATENCY_BOUND = 5.0  # s; the flood made it 3-25 s
MEMORY_BOUND = 64.0  # MB of server RSS (29 idle); the flood made it 488 MB (78-99 in 2.5 s)
CLOSING = b"error limit too many bad lines; closing the connection"


class Flood:
    """Attacker threads: each connects, writes ``chunk`` as fast as it can,
    reads (or not) what comes back, and reconnects when closed."""

    def __init__(self, address: tuple[str, int], chunk: bytes, read: bool = True) -> None:
        self.address, self.chunk, self.read = address, chunk, read
        self.sent = self.received = self.connections = 0
        self.replies: list[bytes] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(ATTACKERS)]

    def __enter__(self) -> Flood:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sock = socket.create_connection(self.address, timeout=5)
            except OSError:
                time.sleep(0.05)
                continue
            with self._lock:
                self.connections += 1
            reader = None
            got: list[bytes] = []
            if self.read:
                reader = threading.Thread(target=_read_into, args=(sock, got), daemon=True)
                reader.start()
            sock.settimeout(0.5)
            offset = 0
            closed_by_server = False
            try:
                while not self._stop.is_set():
                    try:  # a partial send goes on where it stopped
                        n = sock.send(self.chunk[offset:] or self.chunk)
                    except socket.timeout:
                        continue  # the server stopped reading us: good
                    offset = (offset + n) % len(self.chunk)
                    with self._lock:
                        self.sent += n
            except OSError:
                closed_by_server = True
            if reader is None:
                sock.close()
                continue
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            reader.join(DURATION + 15)
            sock.close()
            with self._lock:
                self.received += sum(map(len, got))
                if got and closed_by_server:  # not cut short by the test's end
                    self.replies.append(got[0])


def _read_into(sock: socket.socket, got: list[bytes]) -> None:
    got.append(read_until_closed(sock, limit=1 << 30, timeout=DURATION + 10))


def valid_client(serve: Serve, stop: threading.Event, acked: list[str],
                 latencies: list[float], source: str = "127.0.0.1") -> None:
    """Submits one add after another, each on a new connection, as the hook does."""
    n = 0
    while not stop.is_set():
        n += 1
        ident = f"valid-{source}-{n}"
        line = f"command add domain v{n}.example id {ident} apikey {serve.key}".encode()
        try:
            answer, seconds = ask(serve.line, line, source=source)
        except OSError as exc:
            answer, seconds = str(exc).encode(), float("inf")
        latencies.append(seconds)
        assert answer == f"ok id {ident} domains 1".encode(), answer
        acked.append(ident)
        time.sleep(0.1)


def run_flood(serve: Serve, flood: Flood) -> tuple[float, float, list[str]]:
    """Flood for DURATION while a valid client submits: (worst latency, peak MB, acked ids)."""
    stop = threading.Event()
    acked: list[str] = []
    latencies: list[float] = []
    errors: list[BaseException] = []

    def client() -> None:
        try:
            valid_client(serve, stop, acked, latencies)
        except BaseException as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=client, daemon=True)
    with flood:
        time.sleep(0.3)  # the flood first
        thread.start()
        peak = 0.0
        end = time.monotonic() + DURATION
        while time.monotonic() < end:
            peak = max(peak, serve.rss_mb())
            time.sleep(0.1)
        stop.set()
        thread.join(60)
    peak = max(peak, serve.peak_mb())
    if thread.is_alive():
        latencies.append(float("inf"))  # a submission still unanswered
    print(f"\nflood: worst latency {max(latencies):.3f} s (bound {LATENCY_BOUND}), "
          f"{len(latencies)} submissions, server peak {peak:.0f} MB (bound {MEMORY_BOUND}), "
          f"attacker sent {flood.sent} B, received {flood.received} B "
          f"on {flood.connections} connections")
    assert not errors, errors
    assert latencies, "no submission answered"
    return max(latencies), peak, acked


def check_nothing_lost(serve: Serve, acked: list[str]) -> None:
    stored = {row for row in _ids(serve)}
    assert set(acked) <= stored, sorted(set(acked) - stored)[:5]


def _ids(serve: Serve) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(serve.db, timeout=30)
    try:
        return [r[0] for r in conn.execute("SELECT client_id FROM submissions")]
    finally:
        conn.close()


BAD_FLOODS: list[tuple[str, bytes, Callable[[bytes], bool]]] = [
    # yes '' | socat: 64 KiB of newlines at a time
    ("blank lines", b"\n" * 65536, lambda first: first.startswith(b"error syntax empty line")),
    ("CRLF blank lines", b"\r\n" * 32768, lambda first: first.startswith(b"error syntax")),
    ("binary junk", bytes(range(256)) * 256, lambda first: first.startswith(b"error syntax")),
    ("over-long lines", (b"x" * 1500 + b"\n") * 40,
     lambda first: first == b"error syntax line over 1000 bytes"),
    ("unknown verbs", b"command fly\n" * 5000,
     lambda first: first.startswith(b"error syntax unknown verb")),
]


@pytest.mark.parametrize(("name", "chunk", "first_ok"), BAD_FLOODS,
                         ids=[f[0].replace(" ", "-") for f in BAD_FLOODS])
def test_bad_line_flood_gets_closed_and_valid_clients_stay_fast(
        tmp_path: Path, name: str, chunk: bytes, first_ok: Callable[[bytes], bool]) -> None:
    with Serve(tmp_path) as serve:
        flood = Flood(serve.line, chunk)
        worst, peak, acked = run_flood(serve, flood)
        check_nothing_lost(serve, acked)
        assert worst < LATENCY_BOUND
        assert peak < MEMORY_BOUND
        # The attacker's answers: a few errors, then one closing line; never
        # more bytes back than it sent (no amplification).
        assert flood.replies, "the attacker's connection was never closed"
        for reply in flood.replies:
            lines = reply.split(b"\r\n")
            assert first_ok(lines[0]), lines[0]
            assert CLOSING in lines, lines[-3:]
            assert len(reply) < 2000, len(reply)
        assert flood.received < flood.sent / 10
        assert "Traceback" not in serve.stop()


def test_pipelined_pings_never_read_are_not_buffered_without_bound(tmp_path: Path) -> None:
    """Valid requests, replies never read: the server stops reading (backpressure)."""
    with Serve(tmp_path) as serve:
        flood = Flood(serve.line, b"command ping\n" * 5000, read=False)
        worst, peak, acked = run_flood(serve, flood)
        check_nothing_lost(serve, acked)
        assert worst < LATENCY_BOUND
        assert peak < MEMORY_BOUND
        # At most the socket buffers' worth was accepted: the server stopped reading.
        assert flood.sent < 64 * 1024 * 1024, flood.sent
        assert "Traceback" not in serve.stop()
