"""Attacks on the HTTP side of ``certhook serve``, kept as permanent tests (issue 9).

Each runs a real ``certhook serve`` on loopback, attacks it from 127.0.0.2
(a loopback address of its own, as a remote attacker would have), and
asserts what a user cares about: a valid client on 127.0.0.1 is served
during the attack within a bound far from the failure (before the fix
these requests never completed), the server's memory stays under a stated
bound, and the attacker gets the documented answer.

The CI versions are bounded (a few hundred connections for ~15 s). Set
``CERTHOOK_ATTACK_LONG=1`` for the long versions (the attack as reported:
one byte every 10 s, for two minutes, reconnecting). Measured latencies are
printed (``pytest -s``).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from acmeenv import free_port, wait_for_port
from server_helpers import new_db

LONG = os.environ.get("CERTHOOK_ATTACK_LONG") == "1"
ATTACKER = "127.0.0.2"
SERVED_WITHIN = 5.0  # seconds for a valid request during an attack; it used to never finish
MEMORY_BOUND_MB = 150  # resident memory of the server during an attack


@dataclass
class Serve:
    proc: subprocess.Popen[bytes]
    db: str
    keys: dict[str, str]
    http: int
    https: int
    line: int
    ca_file: str
    stderr: Path
    latencies: dict[str, list[float]] = field(default_factory=dict)

    def rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    db, keys = new_db(tmp_path, "alice")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    ca_file, cert, key = (str(tmp_path / n) for n in ("ca.pem", "chain.pem", "key.pem"))
    ca.cert_pem.write_to_path(ca_file)
    leaf.private_key_and_cert_chain_pem.write_to_path(cert)
    leaf.private_key_pem.write_to_path(key)
    ports = [free_port() for _ in range(3)]
    exe = Path(sys.executable).parent / "certhook"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]
    stderr = tmp_path / "serve.log"
    # The attacks come from one address (127.0.0.2): lift the per-address limit
    # (32) so that they reach the deadlines under test, not that limit.
    conf = tmp_path / "serve.conf"
    conf.write_text("[server]\nmax_connections_per_address = 2000\n")
    with open(stderr, "wb") as log:
        proc = subprocess.Popen(
            [*argv, "serve", "--config", str(conf), "--db", db, "--no-audit", "--log-level", "INFO",
             "--line-listen", f"127.0.0.1:{ports[0]}", "--http-listen", f"127.0.0.1:{ports[1]}",
             "--https-listen", f"127.0.0.1:{ports[2]}", "--tls-cert", cert, "--tls-key", key],
            stdout=subprocess.DEVNULL, stderr=log)
    try:
        for port in ports:
            wait_for_port(port, 30)
        yield Serve(proc, db, keys, ports[1], ports[2], ports[0], ca_file, stderr)
    finally:
        proc.terminate()
        proc.wait(15)


# -- the valid client ----------------------------------------------------------

def _timed(serve: Serve, what: str, call: object) -> None:
    started = time.monotonic()
    assert callable(call)
    call()
    serve.latencies.setdefault(what, []).append(time.monotonic() - started)


def _get(url: str, headers: dict[str, str], context: ssl.SSLContext | None = None) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=context))
    request = urllib.request.Request(url, headers=headers)
    with opener.open(request, timeout=3 * SERVED_WITHIN) as reply:
        reply.read()
        return int(reply.status)


def valid_round(serve: Serve) -> None:
    """One of each request a user makes; each must succeed."""
    from certhook.client.config import ClientConfig, parse_server
    from certhook.client.transport import Deadline, open_session
    from certhook.protocol import Request

    key = serve.keys["alice"]
    base = f"http://127.0.0.1:{serve.http}"
    basic = base64.b64encode(f"alice:{key}".encode()).decode()
    _timed(serve, "healthz", lambda: _expect(200, _get(f"{base}/healthz", {})))
    _timed(serve, "api", lambda: _expect(200, _get(f"{base}/api/v1/domains",
                                                   {"Authorization": f"Bearer {key}"})))
    _timed(serve, "report page", lambda: _expect(200, _get(
        f"{base}/", {"Authorization": f"Basic {basic}"})))
    url = parse_server(f"https://127.0.0.1:{serve.https}")
    config = ClientConfig(servers=(url,), api_key=key, ca_file=serve.ca_file)

    def https_fallback() -> None:
        with open_session(url, config, Deadline(3 * SERVED_WITHIN)) as session:
            response = session.submit(Request(domains=("v.example",), apikey=key))
        assert response.ok, response

    _timed(serve, "https fallback", https_fallback)


def _expect(want: int, got: int) -> None:
    assert got == want


def _check_latencies(serve: Serve, attack: str) -> None:
    for what, values in sorted(serve.latencies.items()):
        print(f"{attack}: {what}: {len(values)} requests, max {max(values):.3f} s,"
              f" bound {SERVED_WITHIN} s")
        assert max(values) < SERVED_WITHIN, (what, values)


def _no_tracebacks(serve: Serve, max_lines: int = 20) -> None:
    text = serve.stderr.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
    assert len(text.splitlines()) <= max_lines, text[-3000:]


# -- slowloris -----------------------------------------------------------------

def _slow_attacker(port: int, count: int, period: float, until: float,
                   answers: list[bytes], reconnect: bool) -> None:
    """``count`` connections sending ``GET / HTTP/1.1\\r\\nX: `` then a byte per ``period``."""
    socks: list[socket.socket] = []

    def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                     source_address=(ATTACKER, 0))
        s.sendall(b"GET / HTTP/1.1\r\nX: ")
        s.setblocking(False)
        return s

    for _ in range(count):
        socks.append(connect())
    while time.monotonic() < until:
        time.sleep(period)
        for s in list(socks):
            try:
                s.send(b"a")
                continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            answers.append(_drain(s))
            s.close()
            socks.remove(s)
            if reconnect:
                socks.append(connect())
    for s in socks:
        answers.append(_drain(s))
        s.close()


def _drain(s: socket.socket) -> bytes:
    s.setblocking(True)
    s.settimeout(0.5)
    try:
        return s.recv(4096)
    except OSError:
        return b""


def _stalled_handshakes(port: int, count: int, until: float) -> list[socket.socket]:
    """TLS clients that connect, send half a ClientHello and stop."""
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                     source_address=(ATTACKER, 0))
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello's start
        socks.append(s)
    return socks


def test_slowloris_does_not_stop_valid_clients(serve: Serve) -> None:
    """Issue 9.1: 300 slow connections took every handler thread; 0 of 5 valid
    requests were answered. Now each costs a descriptor, and the request
    deadline (10 s, the TLS handshake included) closes it with a 408."""
    connections, period, duration = (300, 10.0, 120.0) if LONG else (300, 1.0, 13.0)
    until = time.monotonic() + duration
    answers: list[bytes] = []
    attacker = threading.Thread(target=_slow_attacker,
                                args=(serve.http, connections, period, until, answers, LONG))
    attacker.start()
    stalled = _stalled_handshakes(serve.https, 100, until)
    try:
        time.sleep(1.5)  # every attacking connection is open
        peak = 0.0
        rounds = 0
        while time.monotonic() < until - 1:
            valid_round(serve)
            rounds += 1
            peak = max(peak, serve.rss_mb())
            time.sleep(0.5)
        attacker.join(duration + 30)
        assert not attacker.is_alive()
        # the stalled handshakes were closed at the deadline, without an answer
        for s in stalled:
            s.settimeout(5)
            try:
                assert s.recv(4096) == b""
            except ConnectionResetError:
                pass
    finally:
        for s in stalled:
            s.close()
    _check_latencies(serve, "slowloris")
    print(f"slowloris: {rounds} rounds of valid requests; server RSS peak {peak:.1f} MB,"
          f" bound {MEMORY_BOUND_MB} MB")
    assert rounds >= 5 and peak < MEMORY_BOUND_MB
    # the attacker's connections were answered 408 when their time ran out
    timed_out = sum(1 for a in answers if a.startswith(b"HTTP/1.1 408 "))
    assert timed_out >= connections, (timed_out, answers[:3])
    _no_tracebacks(serve)


def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    """Past max_connections_per_address, one address's new connections are answered
    503 at once; other addresses are served."""
    db, keys = new_db(tmp_path, "alice")
    port = free_port()
    conf = tmp_path / "server.conf"
    conf.write_text(f"[server]\ndb = {db}\nline_listen = off\nhttp_listen = 127.0.0.1:{port}\n"
                    "max_connections_per_address = 20\n")
    exe = Path(sys.executable).parent / "certhook"
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "certhook"]
    proc = subprocess.Popen([*argv, "serve", "--config", str(conf), "--no-audit"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    hogs: list[socket.socket] = []
    try:
        wait_for_port(port, 30)
        refused = 0
        for _ in range(200 if LONG else 60):
            s = socket.create_connection(("127.0.0.1", port), timeout=10,
                                         source_address=(ATTACKER, 0))
            hogs.append(s)
            s.settimeout(0.3)
            try:
                if s.recv(100).startswith(b"HTTP/1.1 503 "):
                    refused += 1
            except (TimeoutError, socket.timeout):
                pass  # admitted: waiting for a request that never comes
        assert refused == len(hogs) - 20
        started = time.monotonic()
        assert _get(f"http://127.0.0.1:{port}/api/v1/domains",
                    {"Authorization": f"Bearer {keys['alice']}"}) == 200
        elapsed = time.monotonic() - started
        print(f"hogging: {refused} of {len(hogs)} refused; valid request {elapsed:.3f} s,"
              f" bound {SERVED_WITHIN} s")
        assert elapsed < SERVED_WITHIN
    finally:
        for s in hogs:
            s.close()
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert b"Traceback" not in err


# -- wrong-key flood -----------------------------------------------------------

def _line_flood(port: int, guesses: int, answers: list[bytes]) -> None:
    """``command ping apikey GUESS``, pipelined, as fast as the server reads."""
    with socket.create_connection(("127.0.0.1", port), timeout=30,
                                  source_address=(ATTACKER, 0)) as s:
        batch = b"".join(b"command ping apikey line-guess-%d\r\n" % i for i in range(guesses))
        s.sendall(batch)
        data = b""
        while data.count(b"\n") < guesses:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answers.extend(data.splitlines())


def _http_flood(port: int, guesses: int, statuses: list[int], basic: bool) -> None:
    for i in range(guesses):
        with socket.create_connection(("127.0.0.1", port), timeout=30,
                                      source_address=(ATTACKER, 0)) as s:
            if basic:
                auth = "Basic " + base64.b64encode(f"alice:basic-guess-{i}".encode()).decode()
                path = "/"
            else:
                auth, path = f"Bearer bearer-guess-{i}", "/api/v1/domains"
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
                      .encode())
            statuses.append(int(s.recv(4096).split(b" ", 2)[1]))


def _valid_line_ping(serve: Serve) -> None:
    with socket.create_connection(("127.0.0.1", serve.line), timeout=3 * SERVED_WITHIN) as s:
        s.sendall(b"command ping apikey " + serve.keys["alice"].encode() + b"\r\n")
        assert s.recv(100) == b"ok pong\r\n"


def test_a_flood_of_wrong_keys_is_throttled(serve: Serve) -> None:
    """Issue 9.13: 11,681 guesses/s with ``command ping apikey X``, 352/s on the
    report page. Now an address gets FAILURES guesses a minute across every
    listener; the rest are answered ``error limit throttled``/429, and valid
    clients elsewhere are served meanwhile."""
    from certhook.server.throttle import FAILURES

    guesses = 20000 if LONG else 2000
    line_answers: list[bytes] = []
    basic: list[int] = []
    bearer: list[int] = []
    attackers = [
        threading.Thread(target=_line_flood, args=(serve.line, guesses, line_answers)),
        threading.Thread(target=_http_flood, args=(serve.http, guesses // 10, basic, True)),
        threading.Thread(target=_http_flood, args=(serve.http, guesses // 10, bearer, False)),
    ]
    for t in attackers:
        t.start()
    rounds = 0
    while any(t.is_alive() for t in attackers) or rounds < 3:
        valid_round(serve)
        _timed(serve, "line ping", lambda: _valid_line_ping(serve))
        rounds += 1
    for t in attackers:
        t.join(60)
    _check_latencies(serve, "wrong-key flood")
    checked = (sum(1 for a in line_answers if a.startswith(b"error auth"))
               + basic.count(401) + bearer.count(401))
    throttled = (sum(1 for a in line_answers if a.startswith(b"error limit throttled"))
                 + basic.count(429) + bearer.count(429))
    print(f"wrong-key flood: {checked} keys checked, {throttled} throttled,"
          f" of {len(line_answers) + len(basic) + len(bearer)} guesses")
    assert len(line_answers) == guesses
    assert checked <= FAILURES and checked + throttled == guesses + len(basic) + len(bearer)
    _no_tracebacks(serve)


def test_the_throttle_says_when_to_retry(serve: Serve) -> None:
    from certhook.server.throttle import FAILURES

    answers: list[bytes] = []
    for _ in range(FAILURES + 1):  # one at a time: each failure counted before the next
        _line_flood(serve.line, 1, answers)
    assert all(a.startswith(b"error auth ") for a in answers[:FAILURES])
    last = answers[-1].decode()
    assert last.startswith("error limit throttled: too many failed key checks; retry in ")
    seconds = int(last.rsplit(" ", 2)[1])
    assert 50 <= seconds <= 60
    with socket.create_connection(("127.0.0.1", serve.http), timeout=10,
                                  source_address=(ATTACKER, 0)) as s:
        s.sendall(b"GET /api/v1/domains HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + serve.keys["alice"].encode() + b"\r\n\r\n")
        reply = s.recv(4096)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 429 ") and b"\r\nRetry-After: " in head
    assert json.loads(body)["error"] == "limit"
