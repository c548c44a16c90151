"""The line protocol grammar (docs/protocol.md), sans-IO."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certhook import protocol
from certhook.errors import ParseError
from certhook.protocol import (
    MAX_LINE,
    LineBuffer,
    Request,
    Response,
    parse_request,
    parse_response,
)

KEY = "k3y-Secret_value"

GOOD = [
    (b"command add domain example.org apikey KEY", Request(domains=("example.org",), apikey="KEY")),
    (b"command add domain example.org apikey KEY\r\n",
     Request(domains=("example.org",), apikey="KEY")),
    (b"command add domain www.example.org domain example.org port 443 apikey K",
     Request(domains=("www.example.org", "example.org"), ports=(443,), apikey="K")),
    (b"command add domain EXAMPLE.org. domain example.org apikey K",
     Request(domains=("example.org",), apikey="K")),
    (b"command add domain *.example.org domain 192.0.2.1 domain 2001:db8::1 apikey K",
     Request(domains=("*.example.org", "192.0.2.1", "2001:db8::1"), apikey="K")),
    (b"command add domain m.example.org port 25 protocol smtp port 993 apikey K",
     Request(domains=("m.example.org",), ports=(25, 993), protocols=("smtp",), apikey="K")),
    (b"command add domain a.org future-key future-value apikey K",
     Request(domains=("a.org",), apikey="K")),
    (b"command add domain a.org fingerprint " + b"AB:" * 31 + b"AB event deployed id x1 "
     b"lineage a.org-0001 client certhook/0.1.0 apikey K",
     Request(domains=("a.org",), fingerprint="ab" * 32, event="deployed", id="x1",
             lineage="a.org-0001", client="certhook/0.1.0", apikey="K")),
    (b"command ping", Request(verb="ping")),
]

BAD = [
    (b"", "command VERB"),
    (b"add domain a.org apikey K", "command VERB"),
    (b"command", "command VERB"),
    (b"command drop domain a.org", "unknown verb"),
    (b"command add apikey K", "at least one domain"),
    (b"command add domain a.org apikey", "has no value"),
    (b"command add  domain a.org", "printable ASCII"),
    (b"command add domain a.org\tapikey K", "printable ASCII"),
    (b"command add domain caf\xc3\xa9.org", "printable ASCII"),
    (b"command add domain a.org port 0", "bad port"),
    (b"command add domain a.org port 65536", "bad port"),
    (b"command add domain a.org port x", "bad port"),
    (b"command add domain a.org port 000000443", "bad port"),
    (b"command add domain a.org port " + b"4" * 900, "bad port"),
    (b"command add domain a.org protocol smtp", "more protocols than ports"),
    (b"command add domain a.org fingerprint abc", "64 hex"),
    (b"command add domain a.org event exploded", "unknown event"),
    (b"command add domain a.org id one id two", "given twice"),
    (b"command add domain -bad-.org", "bad domain"),
    (b"command add domain a.org " + b"x" * MAX_LINE, "over 1000 bytes"),
]


@pytest.mark.parametrize(("line", "expected"), GOOD)
def test_parse_good_request(line: bytes, expected: Request) -> None:
    assert parse_request(line) == expected


@pytest.mark.parametrize(("line", "message"), BAD)
def test_parse_bad_request_names_the_fault(line: bytes, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_request(line, source="10.9.8.7:5555")
    assert str(info.value).startswith("10.9.8.7:5555: ")


@pytest.mark.parametrize(("line", "expected"), GOOD)
def test_encode_parse_round_trip(line: bytes, expected: Request) -> None:
    encoded = expected.encode()
    assert encoded.endswith(b"\r\n")
    assert parse_request(encoded) == expected


@pytest.mark.parametrize(("line", "expected"), [g for g in GOOD if g[1].verb == "add"])
def test_json_round_trip(line: bytes, expected: Request) -> None:
    assert Request.from_json(expected.to_json(), expected.apikey, "http") == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "not an object"),
        ({"domains": "a.org"}, "not a list"),
        ({"domains": [{"x": 1}]}, "not a string"),
        ({"domains": [True]}, "not a string"),
        ({"ports": [443]}, "at least one domain"),
        # str.isdigit() says yes to these; int() then raised ValueError (HTTP 500)
        ({"domain": "a.org", "port": "\u00b2"}, "bad port"),
        ({"domain": "a.org", "port": "\u2460"}, "bad port"),
        ({"domain": "a.org", "port": "\u0663"}, "bad port"),  # ARABIC-INDIC THREE
        ({"domain": "a.org", "port": "4" * 5000}, "bad port"),
        ({"domain": "a.org", "port": 10 ** 4000}, "bad port"),
        ({"domain": "a.org", "port": -443}, "bad port"),
        ({"domain": "a.org", "port": 443.0}, "not a string"),
    ],
)
def test_bad_json_body(body: object, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        Request.from_json(body, "K", "http")


def test_api_key_never_in_errors_or_repr() -> None:
    request = Request(domains=("a.org",), apikey=KEY)
    assert KEY not in repr(request)
    with pytest.raises(ParseError) as info:
        parse_request(b"command add domain a.org apikey " + KEY.encode() + b"!\x7f")
    assert KEY not in str(info.value)
    with pytest.raises(ValueError) as info2:
        Request(domains=("a.org",), apikey=KEY + " x").encode()
    assert KEY not in str(info2.value)


def test_encode_refuses_a_line_over_the_limit() -> None:
    request = Request(domains=tuple(f"host{i}.example.org" for i in range(60)), apikey="K")
    with pytest.raises(ValueError, match="over the 1000-byte limit"):
        request.encode()


RESPONSES = [
    (b"ok pong", Response(True, fields=(("pong", ""),)[:0], text="pong")),
    (b"ok id abc domains 2\r\n",
     Response(True, text="id abc domains 2", fields=(("id", "abc"), ("domains", "2")))),
    (b"error auth unknown api key", Response(False, "auth", "unknown api key")),
]


@pytest.mark.parametrize(("line", "expected"), RESPONSES)
def test_parse_response(line: bytes, expected: Response) -> None:
    assert parse_response(line) == expected


def test_response_encode_round_trip() -> None:
    ok = Response.success(id="x1", domains="3")
    assert parse_response(ok.encode()).get("domains") == "3"
    err = Response.error("limit", "too many connections")
    assert parse_response(err.encode()) == err


@pytest.mark.parametrize("line", [b"", b"OK", b"okay", b"error", b"\xff\xfe", b"x" * 2000])
def test_bad_response(line: bytes) -> None:
    with pytest.raises(ParseError):
        parse_response(line, "server:10023")


STREAM = (
    b"command ping\r\n"
    b"command add domain example.org apikey KEY\n"
    + b"command add domain a.org " + b"x" * 1200 + b"\n"
    + b"command ping\n"
)
EXPECTED_LINES = [b"command ping", b"command add domain example.org apikey KEY", None,
                  b"command ping"]


def _feed_in_chunks(data: bytes, size: int) -> list[bytes | None]:
    buffer = LineBuffer()
    out: list[bytes | None] = []
    for i in range(0, len(data), size):
        out += buffer.feed(data[i : i + size])
    assert buffer.pending == 0
    return out


@pytest.mark.parametrize("size", [len(STREAM), 1, 2, 7, 999, 1000, 1001])
def test_line_buffer_whole_byte_at_a_time_and_chunked(size: int) -> None:
    assert _feed_in_chunks(STREAM, size) == EXPECTED_LINES


def test_line_buffer_holds_trailing_half_line_and_bounds_memory() -> None:
    buffer = LineBuffer()
    assert buffer.feed(b"command ping\ncommand pi") == [b"command ping"]
    assert buffer.pending == len(b"command pi")
    assert buffer.feed(b"x" * 5000) == [None]
    assert buffer.pending == 0
    assert buffer.feed(b"y" * 5000) == []  # still the same over-long line: reported once
    assert buffer.pending == 0
    assert buffer.feed(b"\ncommand ping\n") == [b"command ping"]


def test_line_at_exactly_the_limit() -> None:
    line = b"command add domain a.org id " + b"x" * (MAX_LINE - 30) + b"\n"
    assert len(line) == MAX_LINE - 1
    assert LineBuffer().feed(line) == [line[:-1]]
    assert LineBuffer().feed(b"x" * (MAX_LINE - 1) + b"\n") == [b"x" * (MAX_LINE - 1)]
    assert LineBuffer().feed(b"x" * MAX_LINE + b"\n") == [None]


@given(st.binary(max_size=1200))
def test_parse_request_any_bytes_value_or_parse_error(data: bytes) -> None:
    try:
        parse_request(data)
    except ParseError:
        pass


@given(st.binary(max_size=1200))
def test_parse_response_any_bytes_value_or_parse_error(data: bytes) -> None:
    try:
        parse_response(data)
    except ParseError:
        pass


@given(st.lists(st.binary(max_size=600), max_size=8))
def test_line_buffer_chunking_never_changes_the_lines(chunks: list[bytes]) -> None:
    data = b"".join(chunks)
    buffer = LineBuffer()
    out: list[bytes | None] = []
    for chunk in chunks:
        out += buffer.feed(chunk)
        assert buffer.pending < MAX_LINE
    assert out == LineBuffer().feed(data)


@given(
    st.lists(st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6})\Z"), min_size=1,
             max_size=5),
    st.lists(st.integers(1, 65535), max_size=3),
    st.from_regex(r"\A[A-Za-z0-9_-]{8,40}\Z"),
)
def test_any_valid_request_round_trips(domains: list[str], ports: list[int], key: str) -> None:
    request = Request(domains=tuple(dict.fromkeys(domains)), ports=tuple(ports), apikey=key)
    assert parse_request(request.encode()) == request


# The value grammar as docs/protocol.md writes it, in regular expressions: the
# str-method checks in certhook.protocol (no ``re`` on the hook's path) must
# accept exactly what these match in full.
GRAMMAR = [
    (protocol._is_domain, r"(\*\.)?[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_.])?|[0-9a-f:.]{2,45}",
     "*.abcxyz0189_.-:A \n"),
    (protocol._is_token, r"[A-Za-z0-9._:/@+=-]{1,128}", "aZ09._:/@+=- \n\t%é"),
    (protocol._is_fingerprint, r"[0-9a-f]{64}", "0123456789abcdefgA \n"),
    (protocol._is_protocol, r"[a-z0-9-]{1,20}", "az09-_A \n"),
    (protocol._is_word, r"[\x21-\x7e]+", "a~!\x7f\x20\x1f\n\té"),
]


@pytest.mark.parametrize(("check", "pattern", "alphabet"), GRAMMAR,
                         ids=[check.__name__ for check, _, _ in GRAMMAR])
@given(data=st.data())
def test_value_checks_are_their_grammar(check: Callable[[str], bool], pattern: str,
                                        alphabet: str, data: st.DataObject) -> None:
    text = data.draw(st.from_regex(pattern, fullmatch=True) | st.text(alphabet, max_size=260)
                     | st.text(max_size=8))
    assert check(text) is (re.fullmatch(pattern, text) is not None)


@pytest.mark.parametrize("text", ["example.org\n", "KEY\n", "a" * 64 + "\n", "smtp\n"])
def test_no_value_ends_in_a_newline(text: str) -> None:
    # The old "^...$" expressions matched before a final newline.
    assert not any(check(text) for check, _, _ in GRAMMAR)


@given(st.from_regex(rb"[\x21-\x7e]+( [\x21-\x7e]+)*", fullmatch=True)
       | st.binary(max_size=40) | st.text(" ab\x7f\x00\n", max_size=20).map(str.encode))
def test_line_check_is_its_grammar(line: bytes) -> None:
    assert protocol._is_line(line) is (
        re.fullmatch(rb"[\x21-\x7e]+( [\x21-\x7e]+)*", line) is not None)


def test_encode_refuses_a_value_with_a_newline() -> None:
    with pytest.raises(ValueError, match="empty or has spaces"):
        Request(domains=("a.org",), apikey="KEY\n").encode()


# Fuzzing the JSON request parser (issue 9.9: 710 of 50,000 fuzzed requests
# raised ValueError, an HTTP 500). Any JSON value, any key: a Request or
# ParseError. Hypothesis loads its derandomized "ci" profile by itself when
# $CI is set; the counterexamples found so far are kept as examples.
_JSON_LEAF = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
              | st.sampled_from(["443", "\u00b2", "\u2460", "\u0663", "4" * 5000, "smtp",
                                 "a.org", "deployed", "-1", " 25", "25 "]))
_JSON = st.recursive(_JSON_LEAF, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
_JSON_KEYS = ["domain", "domains", "port", "ports", "protocol", "protocols", "fingerprint",
              "lineage", "event", "id", "client"]


@given(st.dictionaries(st.sampled_from(_JSON_KEYS), _JSON, max_size=6) | _JSON,
       st.none() | st.text(max_size=20))
@example({"domain": "a.org", "port": "\u00b2"}, "K")
@example({"domain": "a.org", "port": "\u2460"}, "K")
@example({"domain": "a.org", "ports": ["4" * 5000]}, "K")
@example({"domain": "a.org", "port": 10 ** 5000}, "K")
def test_json_request_any_value_or_parse_error(body: object, key: str | None) -> None:
    try:
        request = Request.from_json(body, key, "fuzz")
    except ParseError:
        return
    assert request.domains and all(0 < port < 65536 for port in request.ports)


def test_docs_list_the_probes_protocols() -> None:
    """docs/protocol.md names exactly the protocols the server accepts (the probe's table)."""
    from pathlib import Path

    from certhook.probe.starttls import PROTOCOLS

    docs = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `protocol` |"))
    named = set(re.findall(r"`([a-z0-9-]+)`", row.split("(", 1)[1].split(")", 1)[0]))
    assert named | {"tls"} == set(PROTOCOLS)
