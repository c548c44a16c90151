"""Names as clients judge them, and keys as they are: issue 10 item 7.

Presented names that browsers and pyca/cryptography's verifier refuse (raw
UTF-8, underscores) match nothing; a certificate without a subjectAltName
is a critical finding even when its CN matches; an EC key with explicit
curve parameters is read as the curve it spells out, not as a 0-bit key.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from probe_helpers import CA, Issued, Server, _pem_key, serve, write

from certhook.cli import main
from certhook.probe import ProbeOptions, parse_target, probe
from certhook.probe.checks import match_dns_name, weakness_findings
from certhook.x509 import load_pem

# (presented dNSName, reference name, match?) Underscores and raw UTF-8 as
# pyca/cryptography's verifier judges them (it refuses both as names).
DNS_CASES = [
    ("xn--628h.example.com", "😜.example.com", True),  # the user types a U-label
    ("xn--628h.example.com", "xn--628h.example.com", True),
    ("😜.example.com", "xn--628h.example.com", False),  # raw UTF-8 in an IA5String
    ("😜.example.com", "😜.example.com", False),
    ("bücher.example.com", "xn--bcher-kva.example.com", False),
    ("a_b.example.com", "a_b.example.com", False),
    ("_dmarc.example.com", "_dmarc.example.com", False),
    ("-a.example.com", "-a.example.com", False),
    ("a .example.com", "a .example.com", False),
    ("*.example.com", "a.example.com", True),
    ("*.example.com", "xn--628h.example.com", True),
    ("*.xn--628h.example.com", "a.😜.example.com", True),
    ("Example.COM.", "example.com", True),
    ("*", "example", False),
]


@pytest.mark.parametrize(("pattern", "name", "expected"), DNS_CASES)
def test_match_dns_name_as_clients(pattern: str, name: str, expected: bool) -> None:
    assert match_dns_name(pattern, name) is expected


@pytest.fixture(scope="module")
def root() -> CA:
    return CA("names test root")


def _probe(issued: Issued, root: CA, tmp_path: Path, name: str,
           mode: str = "cn_san") -> dict[str, Any]:
    ca_file = write(tmp_path / "ca.pem", root.pem)
    with serve(issued) as server:
        target = parse_target(f"127.0.0.1:{server.port}", expect_name=name)
        return probe(target, ProbeOptions(timeout=5, ca_file=ca_file, name_check=mode)).to_json()


@pytest.mark.parametrize("san", ["a_b.example.org", "😜.example.org"])
def test_a_served_name_clients_refuse_is_a_mismatch(root: CA, tmp_path: Path, san: str) -> None:
    issued = root.issue(cn=None)
    builder = x509.CertificateBuilder().subject_name(issued.cert.subject).issuer_name(
        root.name).public_key(issued.key.public_key()).serial_number(7).not_valid_before(
        issued.cert.not_valid_before_utc).not_valid_after(issued.cert.not_valid_after_utc)
    # cryptography refuses to build a non-ASCII dNSName; a buggy CA tool does not
    dns = x509.DNSName._init_without_validation(san)  # type: ignore[attr-defined]
    builder = builder.add_extension(x509.SubjectAlternativeName([dns]), critical=False)
    cert = builder.sign(root.key, hashes.SHA256())
    reference = san.encode("idna").decode() if not san.isascii() else san
    report = _probe(Issued(cert, issued.key, root), root, tmp_path, reference)
    assert report["status"] == "critical"
    assert report["name_check"] is False
    assert any(r.startswith(f"name mismatch: {reference}") for r in report["reasons"])


@pytest.mark.parametrize("mode", ["cn_san", "cn"])
def test_no_subject_alt_name_is_critical_though_the_cn_matches(
        root: CA, tmp_path: Path, mode: str) -> None:
    report = _probe(root.issue(cn="www.example.org"), root, tmp_path, "www.example.org", mode)
    assert report["name_check"] is True  # PRTG's name channel keeps its meaning
    assert report["status"] == "critical"
    assert report["reasons"] == ["no subjectAltName: modern clients reject it"
                                 " (they ignore the CN; RFC 9525 dropped it)"]


def test_no_subject_alt_name_is_no_finding_with_name_check_none(
        root: CA, tmp_path: Path) -> None:
    report = _probe(root.issue(cn="www.example.org"), root, tmp_path, "www.example.org", "none")
    assert report["status"] == "ok", report["reasons"]


def _explicit_leaf(root: CA, curve: str, tmp_path: Path, form: str) -> tuple[bytes, bytes]:
    """A leaf whose EC key carries its curve as explicit parameters (openssl CLI:
    cryptography writes named curves only). Returns (leaf PEM, key PEM)."""
    key, csr, cert = (str(tmp_path / f"{curve}.{part}") for part in ("key", "csr", "pem"))
    ca_pem, ca_key = write(tmp_path / "ca.pem", root.pem), write(tmp_path / "cakey.pem",
                                                                 _pem_key(root.key))
    subprocess.run(["openssl", "ecparam", "-name", curve, "-param_enc", "explicit",
                    "-conv_form", form, "-genkey", "-noout", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "req", "-new", "-key", key, "-subj", "/CN=ec.example.org",
                    "-addext", "subjectAltName=DNS:ec.example.org", "-out", csr],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_pem, "-CAkey", ca_key,
                    "-days", "30", "-copy_extensions", "copy", "-out", cert],
                   check=True, capture_output=True)
    return Path(cert).read_bytes(), Path(key).read_bytes()


@pytest.mark.parametrize(("curve", "form", "name", "bits"), [
    ("prime256v1", "uncompressed", "secp256r1", 256),
    ("secp384r1", "compressed", "secp384r1", 384),
    ("secp521r1", "uncompressed", "secp521r1", 521),
])
def test_explicit_curve_parameters_are_named(root: CA, tmp_path: Path, curve: str, form: str,
                                             name: str, bits: int) -> None:
    pem, _ = _explicit_leaf(root, curve, tmp_path, form)
    (cert,) = load_pem(pem)
    assert (cert.public_key_type, cert.public_key_bits, cert.curve) == (
        "ecdsa", bits, f"{name} (explicit parameters)")
    texts = [finding.text for finding in weakness_findings(cert, [cert], "TLSv1.3")]
    assert not any(text.startswith("weak key") for text in texts), texts
    assert any(text.startswith("EC key with explicit curve parameters") for text in texts)


def test_an_unknown_explicit_curve_reports_its_field_size(root: CA, tmp_path: Path) -> None:
    pem, _ = _explicit_leaf(root, "secp256k1", tmp_path, "uncompressed")  # not in the list
    (cert,) = load_pem(pem)
    assert (cert.public_key_bits, cert.curve) == (256, "unknown (explicit parameters)")


def test_explicit_curve_key_over_real_tls(root: CA, tmp_path: Path) -> None:
    pem, key = _explicit_leaf(root, "prime256v1", tmp_path, "uncompressed")
    ca_file = write(tmp_path / "roots.pem", root.pem)
    with Server(chain=[pem], key=key) as server:
        target = parse_target(f"127.0.0.1:{server.port}", expect_name="ec.example.org")
        report = probe(target, ProbeOptions(timeout=5, ca_file=ca_file)).to_json()
    assert report["error"] is None, report
    assert (report["key_bits"], report["curve"]) == (256, "secp256r1 (explicit parameters)")
    assert not any(r.startswith("weak key") for r in report["reasons"]), report["reasons"]


# -- IP-address certificates (issue 10 item 6) ------------------------------------------


@pytest.fixture(scope="module")
def ip_cert(root: CA) -> Issued:
    return root.issue("127.0.0.1", "::1", cn=None)


@pytest.mark.parametrize(("host", "written"), [
    ("127.0.0.1", "127.0.0.1:{port}"),
    ("127.0.0.1", "127.0.0.1:{port}/tls"),
    ("::1", "[::1]:{port}/tls"),
    ("::1", "[0:0:0:0:0:0:0:1]:{port}"),
    ("::1", "[0000:0000::0001]:{port}/tls"),
])
def test_ip_target_sends_no_sni_and_matches_its_san(
        root: CA, ip_cert: Issued, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        host: str, written: str) -> None:
    ca_file = write(tmp_path / "ca.pem", root.pem)
    with serve(ip_cert, host=host) as server:
        code = main(["probe", written.format(port=server.port), "--ca-file", ca_file,
                     "--format", "json"])
    (report,) = json.loads(capsys.readouterr().out)
    assert (code, report["status"], report["name_check"]) == (0, "ok", True), report
    assert report["servername"] is None
    assert server.snis == [None]  # RFC 6066 section 3: no literal address in SNI


@pytest.mark.parametrize("expect", ["0:0:0:0:0:0:0:1", "::0001", "127.0.0.1"])
def test_expected_address_in_any_written_form(root: CA, ip_cert: Issued, tmp_path: Path,
                                              expect: str) -> None:
    report = _probe(ip_cert, root, tmp_path, expect)
    assert (report["status"], report["name_check"]) == ("ok", True), report["reasons"]


def test_ipv4_mapped_address_does_not_match_an_ipv4_san(root: CA, tmp_path: Path) -> None:
    # An IPv4 iPAddress is 4 octets, ::ffff:127.0.0.1 is 16: OpenSSL's
    # X509_check_ip and pyca's verifier compare the octets, and refuse.
    issued = root.issue("127.0.0.1", cn=None)
    ca_file = write(tmp_path / "ca.pem", root.pem)
    with serve(issued) as server:  # reached over IPv4 through the mapped address
        report = probe(parse_target(f"[::ffff:127.0.0.1]:{server.port}"),
                       ProbeOptions(timeout=5, ca_file=ca_file)).to_json()
    assert report["name_check"] is False and report["error"] is None
    assert server.snis == [None]
