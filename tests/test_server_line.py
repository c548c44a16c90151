"""The line listeners, plain and TLS: the protocol, bad input, many clients, limits."""

from __future__ import annotations

import resource
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
from server_helpers import (
    LineClient,
    add_line,
    config,
    count,
    http,
    new_db,
    running,
    wait_until,
)

from certhook.protocol import parse_response
from certhook.server.runner import AuditServer
from certhook.server.slots import address_key


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[str, str, ssl.SSLContext]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "srv.pem", tmp_path / "srv.key"
    leaf.private_key_pem.write_to_path(str(key))
    with open(cert, "wb") as f:
        for pem in leaf.cert_chain_pems:
            f.write(pem.bytes())
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return str(cert), str(key), client


@pytest.fixture
def server(tmp_path: Path, tls_files: tuple[str, str, ssl.SSLContext]
           ) -> Iterator[tuple[AuditServer, str, dict[str, str]]]:
    db, keys = new_db(tmp_path, "alice")
    cert, key, _ = tls_files
    cfg = config(db, tls_listen=("127.0.0.1", 0), tls_cert=cert, tls_key=key,
                 idle_timeout=2.0, max_connections=5000, max_connections_per_address=5000)
    with running(cfg, audit=False) as srv:
        yield srv, db, keys


def _clients(srv: AuditServer, tls_files: tuple[str, str, ssl.SSLContext]
             ) -> list[tuple[str, LineClient]]:
    assert srv.line_address and srv.tls_address
    return [("plain", LineClient(srv.line_address)),
            ("tls", LineClient(srv.tls_address, tls_files[2]))]


def test_keychest_form_and_full_request(server: tuple[AuditServer, str, dict[str, str]],
                                        tls_files: tuple[str, str, ssl.SSLContext]) -> None:
    srv, db, keys = server
    for name, client in _clients(srv, tls_files):
        key = keys["alice"]
        assert client.ask(f"command add domain {name}.example.org apikey {key}".encode()
                          ).startswith(b"ok id ")
        full = (f"command add domain www.{name}.example domain {name}.example port 443 port 25"
                f" protocol tls protocol smtp fingerprint {'3b' * 32} lineage x event deployed"
                f" id {name}-7f3a client certhook/0.1.0 apikey {key}")
        assert client.ask(full.encode()) == f"ok id {name}-7f3a domains 2".encode()
        assert client.ask(b"command ping") == b"ok pong"
        assert client.ask(f"command ping apikey {key}".encode()) == b"ok pong"
        assert client.ask(b"command ping apikey wrong") == b"error auth unknown or revoked API key"
        client.close()
    assert count(db, "submissions") == 4
    rows = count(db, "targets", domain="www.tls.example")
    assert rows == 2  # ports 443/tls and 25/smtp


def test_bash_dev_tcp_client(server: tuple[AuditServer, str, dict[str, str]]) -> None:
    srv, db, keys = server
    assert srv.line_address
    host, port = srv.line_address
    script = (f"exec 3<>/dev/tcp/{host}/{port}\n"
              f'echo -e "command add domain example.org apikey {keys["alice"]}" >&3\n'
              "dd bs=1000 count=1 <&3 2>/dev/null\n")
    out = subprocess.run(["bash", "-c", script], capture_output=True, timeout=20, check=True)
    assert out.stdout.startswith(b"ok id ") and out.stdout.endswith(b" domains 1\r\n")
    assert count(db, "targets", domain="example.org") == 1


BAD = [
    (b"x" * 1200 + b"\n", b"error syntax line over 1000 bytes"),
    (b"\x00\xff\xfe binary \x01\x02\n", b"error syntax"),
    ("command add domain caf\u00e9.example apikey k\n".encode("latin-1"), b"error syntax"),
    (b"command add domain \xc3\x28.example apikey k\n", b"error syntax"),  # invalid UTF-8
    (b"command fly domain a.example\n", b"error syntax unknown verb"),
    (b"command add apikey k\n", b"error syntax add needs at least one domain"),
    (b"command add domain a.example\n", b"error auth missing API key"),
    (b"command add domain a.example apikey nope\n", b"error auth"),
    (b"\r\n", b"error syntax"),
]


@pytest.mark.parametrize(("data", "expected"), BAD)
def test_bad_input_gets_an_error_and_the_connection_goes_on(
    server: tuple[AuditServer, str, dict[str, str]],
    tls_files: tuple[str, str, ssl.SSLContext], data: bytes, expected: bytes,
) -> None:
    srv, _, keys = server
    for _, client in _clients(srv, tls_files):
        assert client.ask(data).startswith(expected)
        parse_response(expected + b"\r\n")
        ok = client.ask(add_line(keys["alice"], "after.example"))
        assert ok.startswith(b"ok id "), ok
        client.close()


def test_byte_at_a_time_and_pipelined(server: tuple[AuditServer, str, dict[str, str]],
                                      tls_files: tuple[str, str, ssl.SSLContext]) -> None:
    srv, db, keys = server
    for name, client in _clients(srv, tls_files):
        line = add_line(keys["alice"], f"slow.{name}.example", id=f"slow-{name}")
        for byte in line:
            client.send(bytes([byte]))
            time.sleep(0.001)
        assert client.line() == f"ok id slow-{name} domains 1".encode()
        # pipelined: many requests in one write, answered in order
        batch = b"".join(add_line(keys["alice"], f"p{i}.example", id=f"{name}-p{i}")
                         for i in range(100))
        batch += b"x" * 1500 + b"\n" + b"command ping\n"
        client.send(batch)
        answers = [client.line() for _ in range(102)]
        assert answers[:100] == [f"ok id {name}-p{i} domains 1".encode() for i in range(100)]
        assert answers[100] == b"error syntax line over 1000 bytes"
        assert answers[101] == b"ok pong"
        client.close()
    assert count(db, "submissions") == 202


def test_half_line_then_close_and_half_close(server: tuple[AuditServer, str, dict[str, str]]
                                             ) -> None:
    srv, db, keys = server
    assert srv.line_address
    half = LineClient(srv.line_address)
    half.send(add_line(keys["alice"], "half.example")[:30])
    half.close()
    # a client that shuts its write side still gets its answers
    client = LineClient(srv.line_address)
    client.send(add_line(keys["alice"], "shut.example", id="shut"))
    client.sock.shutdown(socket.SHUT_WR)
    assert client.line() == b"ok id shut domains 1"
    assert client.closed_by_peer()
    assert count(db, "targets", domain="half.example") == 0


def test_idle_and_stuck_connections_are_closed(server: tuple[AuditServer, str, dict[str, str]]
                                               ) -> None:
    srv, _, keys = server
    assert srv.line_address
    idle = LineClient(srv.line_address)
    stuck = LineClient(srv.line_address)
    start = time.monotonic()
    stuck_closed = False
    for _ in range(8):  # a byte now and then, never a whole line (slowloris)
        try:
            stuck.send(b"c")
        except OSError:  # closed by the server already
            stuck_closed = True
            break
        time.sleep(0.4)
    assert idle.closed_by_peer(5)
    assert stuck_closed or stuck.closed_by_peer(5)
    assert time.monotonic() - start < 8
    fresh = LineClient(srv.line_address)
    assert fresh.ask(add_line(keys["alice"], "fresh.example")).startswith(b"ok")


def test_thousands_of_idle_connections(server: tuple[AuditServer, str, dict[str, str]],
                                       tls_files: tuple[str, str, ssl.SSLContext]) -> None:
    srv, _db, keys = server
    assert srv.line_address
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 5000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    srv.line.idle_timeout = 60  # type: ignore[union-attr]
    idle = [socket.create_connection(srv.line_address) for _ in range(2000)]
    try:
        wait_until(lambda: len(srv.line.connections) >= 2000,  # type: ignore[union-attr]
                   what="2000 connections")
        for _, client in _clients(srv, tls_files):
            started = time.monotonic()
            assert client.ask(add_line(keys["alice"], "busy.example")).startswith(b"ok")
            assert time.monotonic() - started < 10  # not stuck behind 2000 silent peers
            client.close()
    finally:
        for s in idle:
            s.close()
    wait_until(lambda: len(srv.line.connections) == 0,  # type: ignore[union-attr]
               what="connections to close")


def _from(address: tuple[str, int], source: str) -> LineClient:
    client = LineClient.__new__(LineClient)
    client.sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
    client._buf = b""
    return client


def test_connection_limit_per_address_and_overall(tmp_path: Path) -> None:
    """Issue 9.3: one address holding connections locked every other client out."""
    db, keys = new_db(tmp_path, "alice")
    cfg = replace(config(db), max_connections=10, max_connections_per_address=4)
    with running(cfg, audit=False) as srv:
        assert srv.line_address and srv.line
        line = srv.line
        held = [_from(srv.line_address, "127.0.0.3") for _ in range(4)]
        for c in held:  # all four are admitted and served
            assert c.ask(b"command ping") == b"ok pong"
        extra = _from(srv.line_address, "127.0.0.3")
        assert extra.line() == b"error limit too many connections from your address"
        assert extra.closed_by_peer()
        # 127.0.0.4 and .5 take 3 each: 10 in all, the server is full
        others = [_from(srv.line_address, f"127.0.0.{4 + i // 3}") for i in range(6)]
        for c in others:
            assert c.ask(b"command ping") == b"ok pong"
        wait_until(lambda: len(line.connections) == 10)
        # a newcomer takes the slot of the longest-idle connection of .3 (the most)
        newcomer = _from(srv.line_address, "127.0.0.2")
        assert newcomer.ask(add_line(keys["alice"], "a.example")).startswith(b"ok")
        assert held[0].line() == b"error limit server full: closing this idle connection"
        assert held[0].closed_by_peer()
        assert len(line.by_address["127.0.0.3"]) == 3
        # .2 and .3 now hold 1 and 3, .4 and .5 hold 3: a second newcomer from .3
        # would not be fewer than the most; from .6 it evicts again
        assert _from(srv.line_address, "127.0.0.3").line() == b"error limit too many connections"
        sixth = _from(srv.line_address, "127.0.0.6")
        assert sixth.ask(b"command ping") == b"ok pong"
        # half a line sent long ago does not keep a slot from a newcomer either
        for c in [*held[1:], *others]:
            c.send(b"command pi")
        seventh = _from(srv.line_address, "127.0.0.7")
        assert seventh.ask(b"command ping") == b"ok pong"
        assert srv.line.evicted == 3


def test_bad_lines_cost_an_error_budget(server: tuple[AuditServer, str, dict[str, str]],
                                        tls_files: tuple[str, str, ssl.SSLContext]) -> None:
    """Issue 9.2: blank lines and junk are answered, at most ten, then the
    connection is closed with one line; what came before is still answered."""
    srv, db, keys = server
    for name, client in _clients(srv, tls_files):
        ok = add_line(keys["alice"], f"{name}.budget.example", id=f"budget-{name}")
        client.send(ok + b"\n" * 5 + b"\x00junk\n" * 3 + b"x" * 1200 + b"\n" + b"\r\n" * 500
                    + b"command ping\n")
        assert client.line() == f"ok id budget-{name} domains 1".encode()
        answers = [client.line() for _ in range(11)]
        assert [a.split(b" ")[:2] for a in answers[:10]] == [[b"error", b"syntax"]] * 10
        assert answers[10] == b"error limit too many bad lines; closing the connection"
        assert client.closed_by_peer()
        client.close()
    assert count(db, "submissions", client_id=lambda c: c.startswith("budget-")) == 2


def test_client_that_never_reads_does_not_stall_others(
    server: tuple[AuditServer, str, dict[str, str]]
) -> None:
    srv, _, keys = server
    assert srv.line_address
    srv.line.idle_timeout = 60  # type: ignore[union-attr]
    hog = socket.create_connection(srv.line_address)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    hog.setblocking(False)
    line = b"command ping\n" * 2000
    sent = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:  # write until the server stops reading us
        try:  # whole lines: a partial send goes on where it stopped
            sent += hog.send(line[sent % len(line):])
        except BlockingIOError:
            time.sleep(0.05)
    other = LineClient(srv.line_address)
    assert other.ask(add_line(keys["alice"], "other.example")).startswith(b"ok")
    hog.close()
    assert sent > 0


def test_junk_on_the_tls_port_and_plain_text_on_tls(
    server: tuple[AuditServer, str, dict[str, str]],
    tls_files: tuple[str, str, ssl.SSLContext],
) -> None:
    srv, _, keys = server
    assert srv.tls_address
    for junk in (b"command ping\r\n", b"\x16\x03\x01\x00\x05junkjunk", bytes(range(256)) * 8):
        s = socket.create_connection(srv.tls_address, timeout=10)
        s.sendall(junk)
        try:  # the handshake fails: an alert or a close, nothing else
            data = s.recv(4096)
            assert not data.startswith(b"ok")
        except ConnectionResetError:
            pass
        s.close()
    for _, client in _clients(srv, tls_files):
        assert client.ask(add_line(keys["alice"], "still.example")).startswith(b"ok")
        client.close()


def test_unknown_protocols_and_limits_on_every_listener(tmp_path: Path,
                                                        tls_files: tuple[str, str, ssl.SSLContext]
                                                        ) -> None:
    """Issues 8.6 and 9.4: line, TLS line, HTTP JSON and the KeyChest form all say so."""
    db, keys = new_db(tmp_path, "alice")
    cert, key, _ = tls_files
    cfg = config(db, tls_listen=("127.0.0.1", 0), tls_cert=cert, tls_key=key,
                 max_ports_per_submission=3)
    with running(cfg, audit=False) as srv:
        assert srv.http_address
        url = "http://{}:{}".format(*srv.http_address)
        alice = keys["alice"]
        for _, client in _clients(srv, tls_files):
            answer = client.ask(add_line(alice, "a.example", port=25, protocol="foo"))
            assert answer.startswith(b"error syntax unknown protocol 'foo' (known: "), answer
            answer = client.ask(add_line(alice, "a.example", port=[1, 2, 3, 4]))
            assert answer == b"error limit more than 3 ports in one submission" \
                b" (max_ports_per_submission)"
            client.close()
        status, data = http("POST", url + "/api/v1/submissions",
                            {"domain": "a.example", "ports": [25], "protocols": ["foo"]}, alice)
        assert (status, data["error"]) == (400, "syntax")
        assert data["message"].startswith("unknown protocol 'foo'")
        status, data = http("POST", url + "/api/v1/submissions",
                            {"domain": "a.example", "ports": [1, 2, 3, 4]}, alice)
        assert (status, data["error"]) == (429, "limit")
        status, data = http("POST", url + "/api/v1.0/servers/add",
                            {"api_key": alice, "domain": "a.example", "port": 25,
                             "protocol": "foo"})
        assert (status, data["status"]) == (400, "error")
        assert data["message"].startswith("unknown protocol 'foo'")
    assert count(db, "targets") == 0


def _closed(client: LineClient, timeout: float) -> bool:
    """Whether the server closes ``client`` within ``timeout`` (whatever it sends first)."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            client.sock.settimeout(max(0.01, deadline - time.monotonic()))
            if client.sock.recv(65536) == b"":
                return True
    except (ConnectionResetError, socket.timeout):
        return not isinstance(sys.exc_info()[1], socket.timeout)
    return False


def _client_hello(context: ssl.SSLContext) -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def test_tls_handshakes_count_and_time_out(tmp_path: Path,
                                           tls_files: tuple[str, str, ssl.SSLContext]) -> None:
    """Issue 9.5: handshakes under way count against the limits, time out, and at most
    max_handshakes of them hold OpenSSL's state at once."""
    db, keys = new_db(tmp_path, "alice")
    cert, key, client_context = tls_files
    cfg = config(db, tls_listen=("127.0.0.1", 0), tls_cert=cert, tls_key=key,
                 idle_timeout=2.0, max_connections_per_address=3)
    with running(cfg, audit=False) as srv:
        assert srv.tls_address and srv.line
        stalled = [_from(srv.tls_address, "127.0.0.9") for _ in range(3)]
        stalled[1].send(b"\x16\x03\x01\x02\x00")  # a record header, and nothing more
        wait_until(lambda: len(srv.line.by_address.get("127.0.0.9", ())) == 3)
        refused = _from(srv.tls_address, "127.0.0.9")
        assert refused.closed_by_peer()  # no handshake is spent on a refusal
        hello = _client_hello(client_context)
        srv.line.max_handshakes = 2
        begun = [_from(srv.tls_address, "127.0.0.10") for _ in range(3)]
        for sock in begun:
            sock.send(hello)
            time.sleep(0.2)
        assert _closed(begun[0], 1)  # the oldest of three made room
        assert len(srv.line.handshaking) == 2
        valid = LineClient(srv.tls_address, client_context)
        assert valid.ask(add_line(keys["alice"], "a.example")).startswith(b"ok")
        started = time.monotonic()
        for sock in stalled + begun[1:]:
            assert _closed(sock, 6)
        assert time.monotonic() - started < 6  # the 2 s deadline, far from never
        assert srv.line.handshaking == {}


@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # the same host over a dual-stack socket
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),  # one site: one address
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not-an-address", "not-an-address"),
])
def test_per_address_limit_counts_an_ipv6_64_as_one_address(host: str, key: str) -> None:
    assert address_key(host) == key
