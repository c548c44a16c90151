"""The bounded GET of ARI and CRL fetches: caps, deadline, redirects, the SSRF guard.

The guard is tested at the decision point: loopback end to end (the
loopback server must see no request), private, link-local and metadata
addresses with ``connect`` replaced (ssrf_helpers), so no packet leaves
this machine.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator

import pytest
import ssrf_helpers
from ca_helpers import OMIT, SLOW, CaWeb
from hypothesis import example, given
from hypothesis import strategies as st

from certhook.errors import ParseError, ProtocolError, RemoteError, RemoteTimeout
from certhook.probe.fetch import MAX_HEADER_BYTES, ResponseReader, get
from certhook.server.ssrf import make_guard

no_packets = ssrf_helpers.no_packets
LOOPBACK = make_guard([ipaddress.ip_network("127.0.0.0/8")])


@pytest.fixture
def web() -> Iterator[CaWeb]:
    with CaWeb() as server:
        yield server


def test_get_body_and_headers(web: CaWeb) -> None:
    web.routes["/a?x=1"] = (200, {"Retry-After": "60"}, b"hello")
    response = get(web.url("/a?x=1"), timeout=5, max_bytes=100)
    assert (response.status, response.body) == (200, b"hello")
    assert response.headers["retry-after"] == "60" and response.address == "127.0.0.1"


def test_status_is_returned_not_raised(web: CaWeb) -> None:
    assert get(web.url("/missing"), timeout=5, max_bytes=100).status == 404


@pytest.mark.parametrize("declared", [True, False])
def test_body_over_the_cap_is_refused(web: CaWeb, declared: bool) -> None:
    # Without a length the reader reads to the end of the stream, and stops at the cap.
    web.routes["/big"] = (200, {} if declared else {"Content-Length": OMIT}, b"x" * 5000)
    with pytest.raises(ProtocolError, match="over 1000"):
        get(web.url("/big"), timeout=5, max_bytes=1000)


def test_trickling_server_is_cut_at_the_deadline(web: CaWeb) -> None:
    web.routes["/slow"] = (200, {}, SLOW)
    start = time.monotonic()
    with pytest.raises(RemoteTimeout):
        get(web.url("/slow"), timeout=1.0, max_bytes=1 << 20)
    assert time.monotonic() - start < 20  # far from the failure: a reset per read


def test_redirects_are_limited(web: CaWeb) -> None:
    web.routes["/r0"] = (302, {"Location": "/r1"}, b"")
    web.routes["/r1"] = (302, {"Location": web.url("/r2")}, b"")
    web.routes["/r2"] = (200, {}, b"end")
    assert get(web.url("/r0"), timeout=5, max_bytes=10).body == b"end"
    web.routes["/r2"] = (302, {"Location": "/r0"}, b"")
    with pytest.raises(RemoteError, match="redirects"):
        get(web.url("/r0"), timeout=5, max_bytes=10)


def test_not_http_is_refused() -> None:
    with pytest.raises(RemoteError, match="not an http"):
        get("ldap://example.org/cn=crl", timeout=1, max_bytes=10)
    with pytest.raises(RemoteError, match="not an http"):
        get("file:///etc/passwd", timeout=1, max_bytes=10)


def test_guard_refuses_loopback_before_connecting(web: CaWeb) -> None:
    web.routes["/crl"] = (200, {}, b"x")
    for url in (web.url("/crl"), f"http://localhost:{web.port}/crl"):
        with pytest.raises(RemoteError, match="address not allowed"):
            get(url, timeout=5, max_bytes=10, allow_address=make_guard())
    assert web.hits == []
    # The same guard, with loopback allowed (allow_networks), lets it through.
    assert get(web.url("/crl"), timeout=5, max_bytes=10, allow_address=LOOPBACK).body == b"x"


@pytest.mark.parametrize("host", ["10.0.0.1", "192.168.1.10", "172.16.0.3", "169.254.169.254",
                                  "[fe80::1]", "[fd00:ec2::254]", "100.100.100.200",
                                  "[::ffff:169.254.169.254]", "100.64.0.1"])
def test_guard_refuses_internal_addresses(no_packets: list[object], host: str) -> None:
    with pytest.raises(RemoteError, match="address not allowed"):
        get(f"http://{host}/latest/meta-data/", timeout=5, max_bytes=10,
            allow_address=make_guard())
    assert no_packets == []


def test_guard_applies_to_every_redirect(web: CaWeb, no_packets: list[object]) -> None:
    web.routes["/crl"] = (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
    with pytest.raises(RemoteError, match=r"address not allowed: 169\.254\.169\.254"):
        get(web.url("/crl"), timeout=5, max_bytes=10, allow_address=LOOPBACK)
    assert web.hits == ["/crl"] and no_packets == []


def test_allowed_global_address_is_tried(no_packets: list[object]) -> None:
    # The guard lets a global address through; connect (replaced) records it.
    with pytest.raises(RemoteError):
        get("http://93.184.215.14/crl", timeout=5, max_bytes=10, allow_address=make_guard())
    assert [a[0] for a in no_packets] == ["93.184.215.14"]  # type: ignore[index]


REPLY = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello"


def _read(chunks: list[bytes], cap: int = 100) -> tuple[int, dict[str, str], bytes]:
    reader = ResponseReader(cap)
    for chunk in chunks:
        reader.feed(chunk)
        if reader.done:
            break
    else:
        reader.feed(b"")
    return reader.result()


def test_reader_whole_bytewise_and_trailing() -> None:
    expected = (200, {"content-length": "5", "x-a": "b"}, b"hello")
    assert _read([REPLY]) == expected
    assert _read([REPLY[i:i + 1] for i in range(len(REPLY))]) == expected
    assert _read([REPLY + b"trailing"]) == expected


def test_reader_without_length_reads_to_close() -> None:
    assert _read([b"HTTP/1.0 200 OK\r\n\r\nab", b"cd"])[2] == b"abcd"


@pytest.mark.parametrize("reply", [
    b"", b"HTTP/1.1 200 OK\r\n", b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
    b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEADER_BYTES,
])
def test_reader_refuses(reply: bytes) -> None:
    with pytest.raises(ParseError):
        _read([reply])


@given(st.lists(st.binary(max_size=64), max_size=8))
@example([b"HTTP/1.1 200 \r\n\r\n"])
@example([b"HTTP/1.0 999 x\r\nContent-Length: 00\r\n\r\n"])
def test_reader_fuzz_only_parse_error(chunks: list[bytes]) -> None:
    try:
        _read(chunks)
    except ParseError:
        pass
