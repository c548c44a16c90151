"""``certhook probe`` against loopback TLS servers serving minted certificates.

One table drives both the library call (:func:`certhook.probe.probe`) and the
command line (``certhook probe ... --format json``): each row sets up a
certificate and a served chain, and states what the user must be told.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
from cryptography.hazmat.primitives import serialization
from probe_helpers import (
    CA,
    DAY,
    NOW,
    Issued,
    full_chain,
    openssl_issue,
    self_signed,
    serve,
    write,
)

from certhook.cli import main
from certhook.probe import ProbeOptions, Target, probe


@dataclass
class Pki:
    root: CA
    inter: CA
    other_root: CA
    other_inter: CA
    ca_file: str


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = CA("certhook test root")
    other = CA("some other root")
    path = tmp_path_factory.mktemp("pki") / "roots.pem"
    return Pki(root, root.intermediate(), other, other.intermediate("other intermediate"),
               write(path, root.pem))


@dataclass
class Case:
    """What to serve and what the probe must report."""

    setup: Callable[[Pki], tuple[Issued, list[bytes]]]
    status: str
    servername: str | None = "a.example.org"
    expect_name: str | None = None
    name_check: str = "cn_san"
    extra_ca: Callable[[Pki], bytes] | None = None
    reasons: tuple[str, ...] = ()  # substrings, each in some reason
    fields: dict[str, Any] = field(default_factory=dict)  # to_json() key -> value


def leaf(*names: str, **kwargs: Any) -> Callable[[Pki], tuple[Issued, list[bytes]]]:
    def setup(pki: Pki) -> tuple[Issued, list[bytes]]:
        issued = pki.inter.issue(*names, **kwargs)
        return issued, full_chain(issued)
    return setup


def _untrusted_root(pki: Pki) -> tuple[Issued, list[bytes]]:
    issued = pki.other_inter.issue("a.example.org")
    return issued, full_chain(issued)


def _missing_intermediate(pki: Pki) -> tuple[Issued, list[bytes]]:
    issued = pki.inter.issue("a.example.org")
    return issued, [issued.pem]


def _wrong_order(pki: Pki) -> tuple[Issued, list[bytes]]:
    second = pki.inter.intermediate("certhook second intermediate")
    issued = second.issue("a.example.org")
    return issued, [issued.pem, pki.inter.pem, second.pem]  # should be second, then inter


def _self_signed(pki: Pki) -> tuple[Issued, list[bytes]]:
    issued = self_signed("a.example.org")
    return issued, [issued.pem]


_self_signed_pinned = self_signed("pinned.example.org")


def _chain_expires_first(pki: Pki) -> tuple[Issued, list[bytes]]:
    short = pki.root.intermediate("short-lived intermediate",
                                  not_after=NOW + 5 * DAY + dt.timedelta(hours=1))
    issued = short.issue("a.example.org")
    return issued, full_chain(issued)


def _sha1(pki: Pki) -> tuple[Issued, list[bytes]]:
    issued = openssl_issue(pki.inter, "a.example.org", "sha1")
    return issued, full_chain(issued)


CASES: dict[str, Case] = {
    "valid": Case(leaf("a.example.org"), "ok", fields={
        "days_left": 90, "trusted": True, "name_check": True, "self_signed": False,
        "key_type": "ecdsa", "key_bits": 256, "curve": "secp256r1", "subject_cn": "a.example.org",
        "sans": ["a.example.org"], "signature_algorithm": "ecdsa-with-SHA256", "reasons": [],
        "servername": "a.example.org"}),
    "expired": Case(leaf("a.example.org", not_before=NOW - 90 * DAY,
                         not_after=NOW - 2 * DAY + dt.timedelta(hours=1)), "critical",
                    reasons=("expired 47 hours ago",), fields={"days_left": -2, "trusted": True}),
    "expired days ago": Case(leaf("a.example.org", not_before=NOW - 90 * DAY,
                                  not_after=NOW - 3 * DAY + dt.timedelta(hours=1)),
                             "critical",
                             reasons=("expired 2 days ago",), fields={"days_left": -3}),
    "not yet valid": Case(leaf("a.example.org", not_before=NOW + 2 * DAY), "critical",
                          reasons=("not yet valid",), fields={"trusted": True}),
    # 90-day certificates: the default thresholds are 21 and 7 days of 90.
    "inside warn": Case(leaf("a.example.org", days=15, not_before=NOW - 75 * DAY), "warning",
                        reasons=("expires in 15 days", "--warn 23.33% (21 days of its 90-day"
                                 " lifetime)"), fields={"days_left": 15}),
    "at warn": Case(leaf("a.example.org", days=21, not_before=NOW - 69 * DAY), "warning",
                    fields={"days_left": 21}),
    # ... and past certbot's renewal point (30 days of 90) by more than a day: overdue.
    "after warn": Case(leaf("a.example.org", days=22, not_before=NOW - 68 * DAY), "warning",
                       reasons=("renewal overdue: certbot should have renewed at",
                                "(1/3 of lifetime left)"), fields={"days_left": 22}),
    "before renewal point": Case(leaf("a.example.org", days=31, not_before=NOW - 59 * DAY),
                                 "ok", fields={"days_left": 31}),
    "inside crit": Case(leaf("a.example.org", days=5, not_before=NOW - 85 * DAY), "critical",
                        reasons=("expires in 5 days", "--crit 7.78%"), fields={"days_left": 5}),
    "15 days of 45 is fine": Case(leaf("a.example.org", days=15, not_before=NOW - 30 * DAY),
                                  "ok", fields={"days_left": 15}),
    "wrong name": Case(leaf("b.example.org"), "critical",
                       reasons=("name mismatch: a.example.org is not in SAN b.example.org",),
                       fields={"name_check": False, "trusted": True}),
    "wildcard match": Case(leaf("*.example.org"), "ok", fields={"name_check": True}),
    "wildcard one label only": Case(leaf("*.example.org"), "critical",
                                    servername="a.b.example.org",
                                    fields={"name_check": False}),
    "wildcard not the apex": Case(leaf("*.example.org"), "critical", servername="example.org",
                                  fields={"name_check": False}),
    "partial wildcard": Case(leaf("a*.example.org"), "critical", fields={"name_check": False}),
    "expect-name over servername": Case(leaf("a.example.org"), "critical",
                                        expect_name="c.example.org",
                                        fields={"name_check": False,
                                                "expect_name": "c.example.org"}),
    "ip san": Case(leaf("127.0.0.1"), "ok", servername=None,
                   fields={"name_check": True, "servername": None, "sans": ["127.0.0.1"]}),
    "ip san mismatch": Case(leaf("127.0.0.2", "localhost"), "critical", servername=None,
                            reasons=("name mismatch: 127.0.0.1",), fields={"name_check": False}),
    "cn_san ignores cn when san present": Case(leaf("b.example.org", cn="a.example.org"),
                                               "critical", fields={"name_check": False}),
    "cn mode reads cn": Case(leaf("b.example.org", cn="a.example.org"), "ok", name_check="cn",
                             fields={"name_check": True, "name_check_mode": "cn"}),
    "cn mode mismatch": Case(leaf("a.example.org", cn="b.example.org"), "critical",
                             name_check="cn", reasons=("not in CN b.example.org",)),
    # The name channel matches the CN (PRTG's meaning), but clients reject the certificate.
    "cn_san falls back to cn without san": Case(
        leaf(cn="a.example.org"), "critical",
        reasons=("no subjectAltName: modern clients reject it",),
        fields={"sans": [], "name_check": True}),
    "name check off": Case(leaf("b.example.org"), "ok", name_check="none",
                           fields={"name_check": None}),
    "self-signed": Case(_self_signed, "critical", reasons=("untrusted: self-signed certificate",),
                        fields={"self_signed": True, "trusted": False}),
    "self-signed, pinned": Case(lambda pki: (_self_signed_pinned, [_self_signed_pinned.pem]),
                                "ok", servername="pinned.example.org",
                                extra_ca=lambda pki: _self_signed_pinned.pem,
                                fields={"self_signed": True, "trusted": True}),
    "untrusted root": Case(_untrusted_root, "critical",
                           reasons=("untrusted: unable to get local issuer certificate",
                                    "the chain ends at CN=other intermediate"),
                           fields={"trusted": False}),
    "missing intermediate": Case(_missing_intermediate, "critical",
                                 reasons=("missing intermediate",),
                                 fields={"trusted": False, "chain": 1}),
    "missing intermediate, held locally": Case(
        _missing_intermediate, "warning", extra_ca=lambda pki: pki.inter.pem,
        reasons=("incomplete chain: the server does not send the intermediate",),
        fields={"trusted": True}),
    "wrong chain order": Case(_wrong_order, "warning",
                              reasons=("chain order: certificate 2 (CN=certhook test"
                                       " intermediate) does not issue certificate 1",),
                              fields={"trusted": True, "chain": 3}),
    "intermediate expires first": Case(_chain_expires_first, "critical",
                                       reasons=("chain certificate CN=short-lived intermediate"
                                                " expires in 5 days",),
                                       fields={"days_left": 90}),
    "rsa 1024": Case(leaf("a.example.org", key_type="rsa1024"), "warning",
                     reasons=("weak key: RSA 1024 bits",),
                     fields={"key_type": "rsa", "key_bits": 1024, "trusted": True}),
    "rsa 2048": Case(leaf("a.example.org", key_type="rsa2048"), "ok",
                     fields={"key_type": "rsa", "key_bits": 2048, "curve": None}),
    "rsa 4096": Case(leaf("a.example.org", key_type="rsa4096"), "ok",
                     fields={"key_type": "rsa", "key_bits": 4096}),
    "ec p-256": Case(leaf("a.example.org", key_type="ec256"), "ok",
                     fields={"key_type": "ecdsa", "key_bits": 256, "curve": "secp256r1"}),
    "ec p-384": Case(leaf("a.example.org", key_type="ec384"), "ok",
                     fields={"key_type": "ecdsa", "key_bits": 384, "curve": "secp384r1"}),
    "ed25519": Case(leaf("a.example.org", key_type="ed25519"), "ok",
                    fields={"key_type": "ed25519", "key_bits": 256}),
    "sha1 signature": Case(_sha1, "warning",
                           reasons=("weak signature: certificate is signed with"
                                    " ecdsa-with-SHA1",)),
}


def _ca_file(case: Case, pki: Pki, tmp_path: Path) -> str:
    if case.extra_ca is None:
        return pki.ca_file
    return write(tmp_path / "ca.pem", Path(pki.ca_file).read_bytes(), case.extra_ca(pki))


def _check(case: Case, report: dict[str, Any], issued: Issued) -> None:
    assert report["status"] == case.status, report["reasons"]
    assert report["error"] is None
    assert report["fingerprint_sha256"] == issued.fingerprint
    assert report["serial"] == format(issued.cert.serial_number, "x")
    for wanted in case.reasons:
        assert any(wanted in reason for reason in report["reasons"]), (wanted, report["reasons"])
    if case.status == "ok":
        assert report["reasons"] == []
    for key, value in case.fields.items():
        if key == "chain":
            assert len(report["chain"]) == value
        else:
            assert report[key] == value, key


@pytest.mark.parametrize("name", list(CASES))
def test_probe_reports(name: str, pki: Pki, tmp_path: Path) -> None:
    case = CASES[name]
    issued, chain = case.setup(pki)
    options = ProbeOptions(ca_file=_ca_file(case, pki, tmp_path), name_check=case.name_check,
                           timeout=5)
    with serve(issued, chain) as server:
        result = probe(Target("127.0.0.1", server.port, "tls", case.servername,
                              case.expect_name), options)
    report = result.to_json()
    _check(case, report, issued)
    assert result.address == "127.0.0.1"
    assert result.leaf is not None
    assert result.leaf.der == issued.cert.public_bytes(serialization.Encoding.DER)
    # The SNI that reached the server: the servername, none for an IP address.
    assert server.snis[-1] == case.servername


@pytest.mark.parametrize("name", list(CASES))
def test_command_line_reports(name: str, pki: Pki, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES[name]
    issued, chain = case.setup(pki)
    argv = ["probe", "--format", "json", "--ca-file", _ca_file(case, pki, tmp_path),
            "--name-check", case.name_check, "--timeout", "5"]
    if case.servername:
        argv += ["--servername", case.servername]
    if case.expect_name:
        argv += ["--expect-name", case.expect_name]
    with serve(issued, chain) as server:
        code = main([*argv, f"127.0.0.1:{server.port}"])
    [report] = json.loads(capsys.readouterr().out)
    _check(case, report, issued)
    assert code == {"ok": 0, "warning": 1, "critical": 2, "unknown": 3}[case.status]


def test_chain_as_sent_and_verified_expiry(pki: Pki) -> None:
    issued = pki.inter.issue("a.example.org", days=30)
    with serve(issued) as server:
        result = probe(Target("127.0.0.1", server.port, servername="a.example.org"),
                       ProbeOptions(ca_file=pki.ca_file))
    assert [cert.subject_cn for cert in result.chain] == ["a.example.org",
                                                         "certhook test intermediate"]
    assert result.earliest_chain_expiry == result.not_after
    # The verified chain runs to the root, which outlives the leaf.
    assert result.verified_chain_expiry == issued.cert.not_valid_after_utc
    assert result.tls_version == "TLSv1.3" and result.cipher


def test_system_roots_do_not_trust_a_private_ca(pki: Pki) -> None:
    issued = pki.inter.issue("a.example.org")
    with serve(issued) as server:
        result = probe(Target("127.0.0.1", server.port, servername="a.example.org"))
    assert result.trusted is False and result.status == "critical"
    assert result.leaf is not None  # read on the second, unverified handshake
    assert server.connections == 2


def test_trusted_chain_costs_one_handshake(pki: Pki) -> None:
    issued = pki.inter.issue("a.example.org")
    with serve(issued) as server:
        probe(Target("127.0.0.1", server.port, servername="a.example.org"),
              ProbeOptions(ca_file=pki.ca_file))
    assert server.connections == 1


def test_expired_and_untrusted_reports_both(pki: Pki) -> None:
    issued = pki.other_inter.issue("a.example.org", not_before=NOW - 90 * DAY,
                                   not_after=NOW - 3 * DAY)
    with serve(issued) as server:
        result = probe(Target("127.0.0.1", server.port, servername="a.example.org"),
                       ProbeOptions(ca_file=pki.ca_file))
    assert result.status == "critical"
    assert [r.split(":")[0].split(" ")[0] for r in result.reasons[:2]] == ["certificate",
                                                                           "untrusted"]


@pytest.mark.parametrize(("setup", "status"), [(_missing_intermediate, "critical"),
                                               (leaf("a.example.org"), "ok")])
def test_python39_fallback_reads_the_leaf_only(
    setup: Callable[[Pki], tuple[Issued, list[bytes]]], status: str, pki: Pki,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from certhook.probe import net

    # Python 3.9 has neither chain accessor: the probe falls back to getpeercert().
    monkeypatch.setattr(net, "_chain", lambda tls, accessor: None)
    issued, chain = setup(pki)
    with serve(issued, chain) as server:
        result = probe(Target("127.0.0.1", server.port, servername="a.example.org"),
                       ProbeOptions(ca_file=pki.ca_file))
    assert result.status == status
    assert [cert.fingerprint_sha256 for cert in result.chain] == [issued.fingerprint]
    assert result.verified_chain_expiry is None
    assert "shows only the leaf of the served chain" in result.notes[0]
    if status == "critical":
        assert result.trust_error == "unable to get local issuer certificate"
