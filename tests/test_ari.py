"""ARI (RFC 9773): the certificate ID, the parsers, and a spec-written CA on loopback.

pebble in Debian 12 has no ARI, so the ACME directory and the renewalInfo
endpoint are written here from the RFC: ``GET directory`` gives
``renewalInfo``; ``GET renewalInfo/CERT-ID`` gives ``suggestedWindow`` and
``explanationURL``, with ``Retry-After``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from ca_helpers import SLOW, CaWeb
from hypothesis import example, given
from hypothesis import strategies as st
from probe_helpers import CA, NOW

from certhook.errors import ParseError
from certhook.probe import ari
from certhook.x509 import load_der

UTC = dt.timezone.utc
HOUR = dt.timedelta(hours=1)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _der(issued: object) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return issued.cert.public_bytes(Encoding.DER)  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("certhook ARI test CA")


@pytest.fixture
def web() -> Iterator[CaWeb]:
    with CaWeb() as server:
        server.routes["/directory"] = (200, {"Content-Type": "application/json"}, json.dumps(
            {"newNonce": server.url("/nonce"), "renewalInfo": server.url("/ari/")}).encode())
        yield server


def _serve_window(web: CaWeb, cert_id: str, start: dt.datetime, end: dt.datetime,
                  headers: dict[str, str] | None = None, explanation: str | None = None) -> None:
    body: dict[str, object] = {"suggestedWindow": {"start": _stamp(start), "end": _stamp(end)}}
    if explanation:
        body["explanationURL"] = explanation
    web.routes[f"/ari/{cert_id}"] = (200, headers or {}, json.dumps(body).encode())


def test_cert_id_is_the_rfc_example() -> None:
    # RFC 9773 4.1: keyIdentifier 69:88:5B:6B:..., serial 0x87654321, whose
    # DER INTEGER content is 00 87 65 43 21 (the leading zero kept).
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    aki = bytes.fromhex("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "rfc")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(0x87654321)
        .not_valid_before(NOW).not_valid_after(NOW + HOUR)
        .add_extension(x509.AuthorityKeyIdentifier(aki, None, None), critical=False)
        .sign(key, hashes.SHA256())
    )
    from cryptography.hazmat.primitives.serialization import Encoding

    parsed = load_der(cert.public_bytes(Encoding.DER))
    assert ari.cert_id(parsed) == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"


def test_cert_id_needs_an_aki() -> None:
    from probe_helpers import self_signed

    cert = load_der(_der(self_signed("a.example")))
    assert cert.authority_key_identifier  # cryptography's helper adds one; strip it:
    stripped = dataclasses.replace(cert, authority_key_identifier=None)
    with pytest.raises(ParseError, match="authority key identifier"):
        ari.cert_id(stripped)


WINDOW = b'{"suggestedWindow": {"start": "2026-12-01T06:00:00Z", "end": "2026-12-03T06:00:00Z"}}'


def test_parse_renewal_info() -> None:
    window = ari.parse_renewal_info(WINDOW)
    assert window == ari.Window(dt.datetime(2026, 12, 1, 6, tzinfo=UTC),
                                dt.datetime(2026, 12, 3, 6, tzinfo=UTC), None)
    offset = ari.parse_renewal_info(
        b'{"suggestedWindow": {"start": "2026-12-01T07:00:00.123+01:00",'
        b' "end": "2026-12-03T06:00:00z"}, "explanationURL": "https://ca.example/incident"}')
    assert offset.start == window.start and offset.explanation_url == "https://ca.example/incident"


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b"{}", b'{"suggestedWindow": 1}',
    b'{"suggestedWindow": {"start": "2026-12-03T06:00:00Z", "end": "2026-12-01T06:00:00Z"}}',
    b'{"suggestedWindow": {"start": "yesterday", "end": "2026-12-01T06:00:00Z"}}',
    b'{"suggestedWindow": {"start": "2026-02-30T06:00:00Z", "end": "2026-12-01T06:00:00Z"}}',
    WINDOW + b"trailing", b"\xff\xfe",
])
def test_parse_renewal_info_refuses(body: bytes) -> None:
    with pytest.raises(ParseError):
        ari.parse_renewal_info(body)


def test_explanation_url_that_is_not_a_url_is_dropped() -> None:
    body = json.loads(WINDOW)
    body["explanationURL"] = "https://x.example/\x1b[2Jgotcha"
    assert ari.parse_renewal_info(json.dumps(body).encode()).explanation_url is None


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 21600.0), ("120", 120.0), ("0", 60.0), ("99999999", 86400.0), ("soon", 21600.0),
    ("Wed, 02 Dec 2026 11:00:00 GMT", 3600.0),
])
def test_retry_after(value: str | None, seconds: float) -> None:
    assert ari.retry_after(value, dt.datetime(2026, 12, 2, 10, tzinfo=UTC)) == seconds


@pytest.mark.parametrize(("now", "expected"), [
    (NOW - HOUR, []),
    (NOW + HOUR, ["warning"]),
    (NOW + 30 * HOUR, ["critical"]),
])
def test_window_findings(now: dt.datetime, expected: list[str]) -> None:
    window = ari.Window(NOW, NOW + 24 * HOUR, "https://ca.example/why")
    found = ari.window_findings(window, now)
    assert [severity for severity, _ in found] == expected
    for _, text in found:
        assert "the CA asks for renewal between" in text and "https://ca.example/why" in text


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lookup(web: CaWeb, cert: object, cache: ari.AriCache, timeout: float = 5.0
            ) -> ari.AriStatus:
    return ari.lookup(cert, web.url("/directory"), now=NOW, timeout=timeout,  # type: ignore[arg-type]
                      cache=cache)


@pytest.mark.parametrize(("start", "end", "severity"), [
    (NOW + 10 * 24 * HOUR, NOW + 12 * 24 * HOUR, None),  # in the future
    (NOW - HOUR, NOW + 24 * HOUR, "warning"),  # started
    (NOW - 48 * HOUR, NOW - 24 * HOUR, "critical"),  # passed
])
def test_lookup_on_a_loopback_ca(web: CaWeb, ca: CA, start: dt.datetime, end: dt.datetime,
                                 severity: str | None) -> None:
    cert = load_der(_der(ca.issue("ari.example")))
    _serve_window(web, ari.cert_id(cert), start, end, explanation="https://ca.example/x")
    status = _lookup(web, cert, ari.AriCache())
    assert status.error is None and status.window is not None
    assert (status.window.start, status.window.end) == (start.replace(microsecond=0),
                                                        end.replace(microsecond=0))
    found = ari.window_findings(status.window, NOW)
    assert [s for s, _ in found] == ([severity] if severity else [])
    assert web.hits == ["/directory", f"/ari/{ari.cert_id(cert)}"]


def test_retry_after_is_honoured(web: CaWeb, ca: CA) -> None:
    cert = load_der(_der(ca.issue("retry.example")))
    _serve_window(web, ari.cert_id(cert), NOW + HOUR, NOW + 2 * HOUR, {"Retry-After": "300"})
    clock = Clock()
    cache = ari.AriCache(clock)
    first = _lookup(web, cert, cache)
    clock.now += 299
    assert _lookup(web, cert, cache) == first
    assert len([h for h in web.hits if h.startswith("/ari/")]) == 1
    clock.now += 2  # past Retry-After: asked again (the directory is still cached)
    _lookup(web, cert, cache)
    assert [h for h in web.hits if h != "/directory"] == [f"/ari/{ari.cert_id(cert)}"] * 2
    assert web.hits.count("/directory") == 1


@pytest.mark.parametrize(("route", "why"), [
    ((404, {}, b"not here"), "HTTP 404"),
    ((200, {}, b"{not json"), "not JSON"),
    ((200, {}, b'{"suggestedWindow": {"start": "x"}}'), "RFC 3339"),
    ((200, {}, SLOW), "timed out"),
])
def test_a_ca_that_fails_gives_unknown(web: CaWeb, ca: CA, route: tuple[int, dict[str, str],
                                                                           object],
                                       why: str) -> None:
    cert = load_der(_der(ca.issue("down.example")))
    web.routes[f"/ari/{ari.cert_id(cert)}"] = route
    status = _lookup(web, cert, ari.AriCache(), timeout=1.0)
    assert status.window is None and status.error is not None and why in status.error


def test_a_directory_without_ari(web: CaWeb, ca: CA) -> None:
    web.routes["/directory"] = (200, {}, b'{"newNonce": "https://x/nonce"}')
    status = _lookup(web, load_der(_der(ca.issue("noari.example"))), ari.AriCache())
    assert status.window is None and "does not offer ARI" in str(status.error)


def test_unreachable_ca(ca: CA) -> None:
    with CaWeb() as gone:
        url = gone.url("/directory")
    status = ari.lookup(load_der(_der(ca.issue("gone.example"))), url, now=NOW, timeout=2,
                        cache=ari.AriCache())
    assert status.window is None and status.error


@given(st.binary(max_size=200))
@example(b'{"suggestedWindow": {"start": "9999-12-31T23:59:60Z", "end": "0000-01-01T00:00:00Z"}}')
@example(b'{"suggestedWindow": {"start": "2026-01-01T00:00:00+99:99", "end": 1}}')
@example(b"[" * 100000)
@example(b'{"suggestedWindow": {"start": "0001-01-01T00:00:00+01:00", "end": "x"}}')
def test_renewal_info_fuzz_only_parse_error(body: bytes) -> None:
    try:
        ari.parse_renewal_info(body)
    except ParseError:
        pass


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["suggestedWindow", "start", "end",
                                                       "explanationURL", "renewalInfo"]),
                                      inner, max_size=4), max_leaves=10))
def test_json_shapes_fuzz_only_parse_error(value: object) -> None:
    body = json.dumps(value).encode()
    for parse in (ari.parse_renewal_info, ari.parse_directory):
        try:
            parse(body)
        except ParseError:
            pass


# The hook sends the lineage's ACME directory (``server`` of its renewal conf).

LE = "https://acme-v02.api.letsencrypt.org/directory"


def test_acme_server_on_the_line_and_in_json() -> None:
    from certhook.protocol import Request, parse_request

    request = Request(domains=("a.example",), apikey="k", acme_server=LE)
    line = request.encode()
    assert b" acme_server " + LE.encode() + b" " in line
    assert parse_request(line) == request
    body = request.to_json()
    assert body["acme_server"] == LE
    assert Request.from_json(body, "k", "test") == request
    assert parse_request(b"command add domain a.example apikey k").acme_server is None


@pytest.mark.parametrize("value", ["ftp://ca.example/dir", "https://", "directory",
                                   "https://" + "a" * 241])
def test_bad_acme_server_is_a_syntax_error(value: str) -> None:
    from certhook.protocol import parse_request

    with pytest.raises(ParseError, match="acme_server"):
        parse_request(f"command add domain a.example acme_server {value} apikey k".encode())


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7f), max_size=260)
       .map(lambda tail: "https://" + tail))
@example("https://a b")
@example("http://x")
def test_is_acme_server_is_its_expression(text: str) -> None:
    import re

    from certhook.protocol import _is_acme_server

    expected = re.fullmatch(r"https?://[\x21-\x7e]{1,240}", text) is not None
    assert _is_acme_server(text) is expected


def test_deploy_hook_reads_the_renewal_conf_server(tmp_path: Any) -> None:
    from probe_helpers import self_signed

    from certhook.client.changes import conf_server, deploy_change

    live = tmp_path / "live" / "a.example"
    live.mkdir(parents=True)
    (live / "cert.pem").write_bytes(self_signed("a.example").pem)
    (tmp_path / "renewal").mkdir()
    conf = tmp_path / "renewal" / "a.example.conf"
    conf.write_text(f"version = 4.1.1\nserver = {LE}\n[renewalparams]\naccount = 1\n"
                    f"server = {LE}\nauthenticator = webroot\n")
    change = deploy_change({"RENEWED_LINEAGE": str(live), "RENEWED_DOMAINS": "a.example"})
    assert change.acme_server == LE
    conf.write_text("[renewalparams]\nservers = x\n")
    assert conf_server(str(conf)) is None
    assert conf_server(str(tmp_path / "missing.conf")) is None
