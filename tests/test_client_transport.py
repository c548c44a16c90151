"""The transports: line over TCP and TLS, the HTTPS fallback, and servers that misbehave."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from client_helpers import KEY, HttpServer, LineServer, closed_port

from certhook.client.config import ClientConfig, parse_server, parse_servers
from certhook.client.transport import Deadline, HttpSession, LineSession, open_session
from certhook.errors import ProtocolError, RemoteError, RemoteTimeout
from certhook.protocol import Request

REQUEST = Request(domains=("a.example.org", "www.a.example.org"), apikey=KEY, lineage="a",
                  event="deployed", id="00112233aabbccdd", client="certhook/test")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def other_ca_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def line_server() -> Iterator[LineServer]:
    with LineServer() as server:
        yield server


def test_line_delivery(line_server: LineServer) -> None:
    with LineSession(parse_server(line_server.url), Deadline(5)) as session:
        response = session.submit(REQUEST)
        again = session.submit(REQUEST)  # two requests on one connection
    assert response.ok and response.get("id") == REQUEST.id and response.get("domains") == "2"
    assert again.ok
    assert line_server.requests == [REQUEST, REQUEST]
    assert line_server.connections == 1


def test_tls_verified_against_the_configured_ca(ca: trustme.CA, ca_file: str) -> None:
    with LineServer(ca=ca) as server:
        assert server.url.startswith("tls://")
        with LineSession(parse_server(server.url), Deadline(5), ca_file) as session:
            assert session.submit(REQUEST).ok
        assert server.requests == [REQUEST]


def test_tls_with_the_wrong_ca_is_refused(ca: trustme.CA, other_ca_file: str) -> None:
    with LineServer(ca=ca) as server:
        with pytest.raises(RemoteError, match="TLS certificate not trusted") as info:
            LineSession(parse_server(server.url), Deadline(5), other_ca_file)
        assert server.requests == []
    assert str(info.value).startswith(server.url)


def test_tls_without_a_ca_file_uses_system_roots(ca: trustme.CA) -> None:
    with LineServer(ca=ca) as server, pytest.raises(RemoteError, match="not trusted"):
        LineSession(parse_server(server.url), Deadline(5), None)


def test_refused() -> None:
    url = f"tcp://127.0.0.1:{closed_port()}"
    with pytest.raises(RemoteError) as info:
        LineSession(parse_server(url), Deadline(5))
    assert str(info.value) == f"{url}: connection refused"


# mode -> (error class, words in the message)
MISBEHAVING = [
    ("silent", RemoteTimeout, "timed out"),
    ("garbage", ProtocolError, "not ok or error"),
    ("close", RemoteError, "closed the connection before answering"),
]


@pytest.mark.parametrize(("mode", "error", "words"), MISBEHAVING)
def test_misbehaving_servers_cost_at_most_the_deadline(
    mode: str, error: type[Exception], words: str,
) -> None:
    with LineServer(mode) as server:
        session = LineSession(parse_server(server.url), Deadline(0.6))
        started = time.monotonic()
        with pytest.raises(error) as info:
            session.submit(REQUEST)
        elapsed = time.monotonic() - started
    assert elapsed < 30  # the deadline is 0.6 s; what this catches is waiting for a peer
    assert words in str(info.value)
    assert server.url in str(info.value)
    assert KEY not in str(info.value)
    assert "\n" not in str(info.value)


def test_tls_handshake_with_a_silent_server_is_bounded(ca_file: str) -> None:
    with LineServer("silent") as server:  # speaks no TLS at all
        url = server.url.replace("tcp://", "tls://")
        started = time.monotonic()
        with pytest.raises(RemoteTimeout, match="handshake timed out"):
            LineSession(parse_server(url), Deadline(0.6), ca_file)
        assert time.monotonic() - started < 5  # deadline 0.6 s; the peer never speaks


def test_a_passed_deadline_stops_before_connecting(line_server: LineServer) -> None:
    deadline = Deadline(0)
    with pytest.raises(RemoteTimeout, match="deadline passed"):
        LineSession(parse_server(line_server.url), deadline)
    assert line_server.connections == 0


def test_error_responses_are_responses(tmp_path: Path) -> None:
    with LineServer("unavailable") as server:
        with LineSession(parse_server(server.url), Deadline(5)) as session:
            response = session.submit(REQUEST)
    assert not response.ok and response.code == "unavailable"


def test_https_fallback_posts_json_with_a_bearer_key(ca: trustme.CA, ca_file: str) -> None:
    with HttpServer(ca=ca) as server:
        session = HttpSession(parse_server(server.url), Deadline(5), KEY, ca_file)
        response = session.submit(REQUEST)
        assert response.ok and response.get("id") == REQUEST.id
        assert server.requests == [REQUEST]
        assert server.headers[0]["Authorization"] == f"Bearer {KEY}"
        assert KEY.encode() not in server.bodies[0]  # the key travels in the header only
        assert KEY not in repr(session)


# server mode, key -> (ok, code)
HTTP_ANSWERS = [
    ("ok", KEY, (True, None)),
    ("ok", "wrong-key", (False, "auth")),
    ("unavailable", KEY, (False, "unavailable")),
]


@pytest.mark.parametrize(("mode", "key", "expected"), HTTP_ANSWERS)
def test_http_answers(mode: str, key: str, expected: tuple[bool, str | None]) -> None:
    with HttpServer(mode) as server:
        response = HttpSession(parse_server(server.url), Deadline(5), key).submit(REQUEST)
    assert (response.ok, response.code) == expected


def test_https_with_the_wrong_ca(ca: trustme.CA, other_ca_file: str) -> None:
    with HttpServer(ca=ca) as server:
        session = HttpSession(parse_server(server.url), Deadline(5), KEY, other_ca_file)
        with pytest.raises(RemoteError, match="not trusted") as info:
            session.submit(REQUEST)
    assert KEY not in str(info.value)


def test_http_to_a_silent_line_server_is_bounded() -> None:
    with LineServer("silent") as server:
        url = server.url.replace("tcp://", "http://")
        session = HttpSession(parse_server(url), Deadline(0.6), KEY)
        started = time.monotonic()
        with pytest.raises(RemoteTimeout):
            session.submit(REQUEST)
        assert time.monotonic() - started < 5  # deadline 0.6 s; the peer never answers


def test_open_session_picks_the_transport(line_server: LineServer) -> None:
    config = ClientConfig(servers=parse_servers(line_server.url), api_key=KEY)
    assert isinstance(open_session(config.servers[0], config, Deadline(5)), LineSession)
    http = parse_server("https://127.0.0.1:1")
    assert isinstance(open_session(http, config, Deadline(5)), HttpSession)


# http:// beyond loopback sends the key in clear: refused unless allowed.
# The hosts below are never connected to: open_session decides before any socket.
@pytest.mark.parametrize(("url", "allowed"), [
    ("http://127.0.0.1:8023", True),
    ("http://127.1.2.3:8023", True),
    ("http://[::1]:8023", True),
    ("http://localhost:8023", True),
    ("http://192.0.2.10:8023", False),
    ("http://10.0.0.1:8023", False),
    ("http://audit.example.org", False),
    ("http://localhost.example.org", False),
    ("http://[::]:8023", False),
])
def test_plain_http_only_to_loopback(url: str, allowed: bool,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTHOOK_ALLOW_HTTP", raising=False)
    server = parse_server(url)
    config = ClientConfig(servers=(server,), api_key=KEY)
    if allowed:
        assert isinstance(open_session(server, config, Deadline(5)), HttpSession)
        return
    with pytest.raises(RemoteError) as info:
        open_session(server, config, Deadline(5))
    message = str(info.value)
    assert message.startswith(f"{server}: refused: http:// would send the API key in clear")
    assert "allow_http = yes" in message and "CERTHOOK_ALLOW_HTTP=1" in message
    assert "\n" not in message and KEY not in message
    # https:// to the same host is fine
    https = parse_server(url.replace("http://", "https://"))
    assert isinstance(open_session(https, config, Deadline(5)), HttpSession)


def test_plain_http_allowed_explicitly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CERTHOOK_ALLOW_HTTP", raising=False)
    server = parse_server("http://192.0.2.10:8023")
    allowed = ClientConfig(servers=(server,), api_key=KEY,
                           sections={"client": {"allow_http": "yes"}})
    assert isinstance(open_session(server, allowed, Deadline(5)), HttpSession)
    plain = ClientConfig(servers=(server,), api_key=KEY, sections={"client": {"allow_http": "no"}})
    with pytest.raises(RemoteError, match="refused"):
        open_session(server, plain, Deadline(5))
    monkeypatch.setenv("CERTHOOK_ALLOW_HTTP", "1")
    assert isinstance(open_session(server, plain, Deadline(5)), HttpSession)
