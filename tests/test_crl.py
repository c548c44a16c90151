"""Revocation from CRLs: a CA that publishes its CRL over loopback HTTP, made here.

The CRLs are minted with cryptography's CertificateRevocationListBuilder and
read by certhook's own DER reader; the signature is checked with
cryptography. Each fault a CA can commit gives "revocation unknown", and
the wrong-key CRL never marks anything revoked.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterator
from typing import Any

import pytest
import ssrf_helpers
import x509_oracle
from ca_helpers import OMIT, CaWeb, issue_with_crl, make_crl
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import example, given
from hypothesis import strategies as st
from probe_helpers import CA, NOW

from certhook.errors import ParseError
from certhook.probe import crl
from certhook.server.ssrf import make_guard
from certhook.x509 import Certificate, load_der

no_packets = ssrf_helpers.no_packets
HOUR = dt.timedelta(hours=1)


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA("certhook CRL test CA")


@pytest.fixture
def web() -> Iterator[CaWeb]:
    with CaWeb() as server:
        yield server


def _load(issued: Any) -> Certificate:
    return load_der(issued.cert.public_bytes(Encoding.DER))


def _leaf(ca: CA, web: CaWeb, serial: int | None = None) -> tuple[Certificate, Certificate]:
    leaf = _load(issue_with_crl(ca, "crl.example", (web.url("/ca.crl"),), serial=serial))
    return leaf, load_der(ca.cert.public_bytes(Encoding.DER))


def _check(leaf: Certificate, issuer: Certificate, **kwargs: Any) -> crl.RevocationStatus:
    kwargs.setdefault("cache", crl.CrlCache())
    kwargs.setdefault("timeout", 5.0)
    return crl.check(leaf, [leaf, issuer], now=NOW, **kwargs)


def test_crl_distribution_points_are_read_as_cryptography_does(ca: CA) -> None:
    urls = ("http://crl.example/a.crl", "ldap://ldap.example/cn=ca?certificateRevocationList",
            "https://crl.example/b.crl")
    ours = x509_oracle.check(issue_with_crl(ca, "dp.example", urls).cert)
    assert ours.crl_urls == ("http://crl.example/a.crl", "https://crl.example/b.crl")
    assert x509_oracle.check(issue_with_crl(ca, "none.example", ()).cert).crl_urls == ()


def test_parse_matches_cryptography(ca: CA) -> None:
    der = make_crl(ca, {5: x509.ReasonFlags.key_compromise, 2**158 + 1: None,
                        77: x509.ReasonFlags.superseded})
    parsed = crl.parse_crl(der)
    theirs = x509.load_der_x509_crl(der)
    assert parsed.this_update == theirs.last_update_utc
    assert parsed.next_update == theirs.next_update_utc
    assert parsed.issuer_der == theirs.issuer.public_bytes()
    assert parsed.authority_key_identifier == ca.cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert {serial: entry.reason for serial, entry in parsed.revoked.items()} == {
        5: "keyCompromise", 2**158 + 1: None, 77: "superseded"}
    assert parsed.revoked[5].revoked_at == theirs[0].revocation_date_utc


def test_parse_refuses_trailing_and_truncated(ca: CA) -> None:
    der = make_crl(ca, {5: None})
    with pytest.raises(ParseError, match="trailing"):
        crl.parse_crl(der + b"\x00")
    for cut in (1, 10, len(der) // 2, len(der) - 1):
        with pytest.raises(ParseError):
            crl.parse_crl(der[:cut])


@pytest.mark.parametrize(("extension", "why"), [
    (x509.DeltaCRLIndicator(1), "delta CRL"),
    (x509.IssuingDistributionPoint(None, None, False, True, None, False, False),
     "only CA certificates"),
])
def test_partial_crls_are_not_used(ca: CA, extension: Any, why: str) -> None:
    with pytest.raises(ParseError, match=why):
        crl.parse_crl(make_crl(ca, extensions=((extension, True),)))


def test_good(ca: CA, web: CaWeb) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number + 1: None}))
    status = _check(leaf, issuer)
    assert (status.revoked, status.checked_by, status.error) == (False, "cryptography", None)
    assert crl.findings(status) == ([], [])


def test_revoked_with_reason_is_critical(ca: CA, web: CaWeb) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number:
                                                    x509.ReasonFlags.key_compromise}))
    status = _check(leaf, issuer)
    assert status.revoked is True
    when = (NOW - 2 * 24 * HOUR).strftime("%Y-%m-%d %H:%M UTC")
    assert crl.findings(status) == ([("critical", f"revoked at {when} (keyCompromise)")], [])


@pytest.mark.parametrize("kind", ["wrong key", "wrong key, forged AKI", "other issuer",
                                  "expired", "not yet valid"])
def test_an_unusable_crl_never_marks_revoked(ca: CA, web: CaWeb, kind: str) -> None:
    leaf, issuer = _leaf(ca, web)
    revoked = {leaf.serial_number: x509.ReasonFlags.key_compromise}
    other = ec.generate_private_key(ec.SECP256R1())
    body = {
        "wrong key": lambda: make_crl(ca, revoked, signing_key=other),
        "wrong key, forged AKI": lambda: make_crl(ca, revoked, signing_key=other,
                                                  aki_key=ca.key),
        "other issuer": lambda: make_crl(CA("another CA"), revoked),
        "expired": lambda: make_crl(ca, revoked, this_update=NOW - 10 * 24 * HOUR,
                                    next_update=NOW - HOUR),
        "not yet valid": lambda: make_crl(ca, revoked, this_update=NOW + 24 * HOUR,
                                          next_update=NOW + 48 * HOUR),
    }[kind]()
    web.routes["/ca.crl"] = (200, {}, body)
    status = _check(leaf, issuer)
    assert status.revoked is None and status.error
    findings, notes = crl.findings(status)
    assert findings == [] and notes[0].startswith("revocation unknown: ")
    assert {"wrong key": "another key", "wrong key, forged AKI": "does not verify",
            "other issuer": "another issuer", "expired": "expired",
            "not yet valid": "not valid before"}[kind] in notes[0]


@pytest.mark.parametrize(("route", "why"), [
    ((200, {"Content-Length": OMIT}, b"\x30" * (crl.MAX_CRL_BYTES + 1)), "over 10485760"),
    ((200, {}, b"-----BEGIN X509 CRL-----\nMIIB\n-----END X509 CRL-----\n"), "CRL"),
    ((200, {}, b"<html>moved</html>"), "CRL"),
    ((404, {}, b"gone"), "HTTP 404"),
])
def test_a_ca_that_fails_gives_unknown(ca: CA, web: CaWeb, route: Any, why: str) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = route
    status = _check(leaf, issuer)
    assert status.revoked is None and why in str(status.error)


def test_unreachable(ca: CA) -> None:
    with CaWeb() as gone:
        leaf, issuer = _leaf(ca, gone)
    status = _check(leaf, issuer, timeout=2.0)
    assert status.revoked is None and "cannot connect" in str(status.error)


def test_no_distribution_point_is_not_a_finding(ca: CA) -> None:
    leaf = _load(issue_with_crl(ca, "short.example", ()))
    status = crl.check(leaf, [leaf], now=NOW, timeout=1, cache=crl.CrlCache())
    assert status == crl.RevocationStatus(None) and crl.findings(status) == ([], [])


def test_without_a_verifier_nothing_is_trusted(ca: CA, web: CaWeb,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number: None}))
    monkeypatch.setattr(crl, "verifier", lambda: None)
    status = _check(leaf, issuer)
    assert status.revoked is None and web.hits == []
    assert crl.findings(status) == ([], ["revocation unknown: no verifier (install cryptography)"])


def test_the_issuer_must_be_at_hand(ca: CA, web: CaWeb) -> None:
    leaf, _ = _leaf(ca, web)
    status = crl.check(leaf, [leaf], now=NOW, timeout=1, cache=crl.CrlCache())
    assert status.revoked is None and "issuer certificate" in str(status.error)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cached_until_next_update(ca: CA, web: CaWeb) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, next_update=NOW + 2 * HOUR))
    clock = Clock()
    cache = crl.CrlCache(clock)
    assert _check(leaf, issuer, cache=cache).revoked is False
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number: None}))
    clock.now += 3600
    assert _check(leaf, issuer, cache=cache).revoked is False  # the cached one
    clock.now += 3601  # past nextUpdate: fetched again
    assert _check(leaf, issuer, cache=cache).revoked is True
    assert web.hits == ["/ca.crl", "/ca.crl"]


def test_guard_refuses_loopback_crl_url(ca: CA, web: CaWeb) -> None:
    leaf, issuer = _leaf(ca, web)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number: None}))
    status = _check(leaf, issuer, allow_address=make_guard())
    assert status.revoked is None and "address not allowed" in str(status.error)
    assert web.hits == []
    allowed = make_guard([ipaddress.ip_network("127.0.0.0/8")])
    assert _check(leaf, issuer, allow_address=allowed).revoked is True


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://10.1.2.3/ca.crl", "http://[fd00:ec2::254]/x",
                                 "http://192.168.0.1/x", "http://[fe80::1]/x"])
def test_guard_refuses_internal_crl_urls(ca: CA, no_packets: list[object], url: str) -> None:
    leaf = _load(issue_with_crl(ca, "ssrf.example", (url,)))
    issuer = load_der(ca.cert.public_bytes(Encoding.DER))
    status = _check(leaf, issuer, allow_address=make_guard())
    assert status.revoked is None and "address not allowed" in str(status.error)
    assert no_packets == []


def _seed_crl() -> bytes:
    return make_crl(CA("fuzz CA"), {1: x509.ReasonFlags.key_compromise, 300: None})


SEED = _seed_crl()


@given(st.data())
@example(None)
def test_crl_reader_fuzz_only_parse_error(data: Any) -> None:
    raw = bytearray(SEED)
    if data is not None:
        for _ in range(data.draw(st.integers(1, 4))):
            index = data.draw(st.integers(0, len(raw) - 1))
            raw[index] = data.draw(st.integers(0, 255))
        raw = raw[:data.draw(st.integers(0, len(raw)))] + data.draw(st.binary(max_size=8))
    try:
        crl.parse_crl(bytes(raw))
    except ParseError:
        pass


@given(st.binary(max_size=300))
@example(b"\x30\x03\x30\x01\x02")
def test_crl_reader_fuzz_random_bytes(raw: bytes) -> None:
    try:
        crl.parse_crl(raw)
    except ParseError:
        pass


def _ari_routes(web: CaWeb, leaf: Certificate, start: dt.datetime, end: dt.datetime) -> str:
    import json

    from certhook.probe import ari

    web.routes["/directory"] = (200, {}, json.dumps({"renewalInfo": web.url("/ari")}).encode())
    window = {"suggestedWindow": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "end": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
              "explanationURL": "https://ca.example/incident-42"}
    web.routes[f"/ari/{ari.cert_id(leaf)}"] = (200, {}, json.dumps(window).encode())
    return web.url("/directory")


@pytest.mark.parametrize("revoked", [False, True])
def test_probe_cli_with_crl_and_ari(ca: CA, web: CaWeb, tmp_path: Any, revoked: bool,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from probe_helpers import serve, write

    from certhook.cli import main

    issued = issue_with_crl(ca, "localhost", (web.url("/ca.crl"),))
    leaf = _load(issued)
    web.routes["/ca.crl"] = (200, {}, make_crl(ca, {leaf.serial_number: None} if revoked
                                               else {}))
    directory = _ari_routes(web, leaf, NOW - HOUR, NOW + 24 * HOUR)
    roots = write(tmp_path / "roots.pem", ca.pem)
    with serve(issued, [issued.pem]) as server:
        target = f"localhost:{server.port}"
        # Off by default: no CA contacted, the fields null.
        main(["probe", target, "--ca-file", roots, "--format", "json"])
        plain = json.loads(capsys.readouterr().out)
        plain = plain[0] if isinstance(plain, list) else plain
        assert (plain["ari_window"], plain["revoked"]) == (None, None) and web.hits == []
        code = main(["probe", target, "--ca-file", roots, "--format", "json", "--crl",
                     "--ari", directory])
    out = json.loads(capsys.readouterr().out)
    result = out[0] if isinstance(out, list) else out
    assert result["revoked"] is revoked and result["revocation_checked_by"] == "cryptography"
    assert result["ari_window"]["explanation_url"] == "https://ca.example/incident-42"
    assert any("the CA asks for renewal between" in r for r in result["reasons"])
    assert result["status"] == ("critical" if revoked else "warning")
    assert code == (2 if revoked else 1)
    assert any(r.startswith("revoked at ") for r in result["reasons"]) is revoked


def test_probe_cli_ca_down_is_a_note_not_a_status(ca: CA, tmp_path: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from probe_helpers import serve, write

    from certhook.cli import main

    with CaWeb() as gone:
        crl_url, directory = gone.url("/ca.crl"), gone.url("/directory")
    issued = issue_with_crl(ca, "localhost", (crl_url,))
    roots = write(tmp_path / "roots.pem", ca.pem)
    with serve(issued, [issued.pem]) as server:
        code = main(["probe", f"localhost:{server.port}", "--ca-file", roots, "--format",
                     "json", "--crl", "--ari", directory, "--timeout", "3"])
    out = json.loads(capsys.readouterr().out)
    result = out[0] if isinstance(out, list) else out
    assert (code, result["status"], result["revoked"], result["ari_window"]) == (0, "ok", None,
                                                                                 None)
    assert any(n.startswith("ARI status unknown: ") for n in result["notes"])
    assert any(n.startswith("revocation unknown: ") for n in result["notes"])


def test_probe_text_shows_an_unknown_revocation(ca: CA, tmp_path: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from probe_helpers import serve, write

    from certhook.cli import main

    with CaWeb() as web:
        issued = issue_with_crl(ca, "localhost", (web.url("/ca.crl"),))
        web.routes["/ca.crl"] = (200, {}, b"<html>not a CRL</html>")
        roots = write(tmp_path / "roots.pem", ca.pem)
        with serve(issued, [issued.pem]) as server:
            assert main(["probe", f"localhost:{server.port}", "--ca-file", roots, "--crl"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "(revocation unknown: " in out
