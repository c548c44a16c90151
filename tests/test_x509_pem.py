"""certhook.x509's PEM reading, and a real certbot lineage read back.

The lineage test runs certbot against pebble on loopback (the ``certbot``
fixture of conftest.py) and compares with what `certbot certificates` prints.
"""

from __future__ import annotations

import datetime
import functools
import re
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from x509_oracle import (
    DER,
    UTC,
    certhook_view,
    cryptography_view,
    mint,
    name,
)

from certhook.errors import LocalError, ParseError
from certhook.x509 import load_pem, load_pem_file

# ---------------------------------------------------------------- PEM


@functools.cache
def sample_chain() -> tuple[x509.Certificate, ...]:
    return (
        mint(key="rsa2048", sans=[x509.DNSName("example.org")]),
        mint(key="p384", subject=name((NameOID.COMMON_NAME, "Intermediate"))),
    )


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def test_pem_blocks_in_order_with_text_between() -> None:
    leaf, inter = sample_chain()
    text = (
        "subject=CN=example.org\nissuer=CN=Intermediate\n"
        + pem_of(leaf)
        + "\n-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
        + "Bag Attributes: <No Attributes>\n"
        + pem_of(inter)
        .replace("BEGIN CERTIFICATE", "BEGIN X509 CERTIFICATE")
        .replace("END CERTIFICATE", "END X509 CERTIFICATE")
        + "trailing text\n"
    )
    for data in (text, text.encode(), text.replace("\n", "\r\n").encode()):
        certs = load_pem(data)
        assert [c.der for c in certs] == [leaf.public_bytes(DER), inter.public_bytes(DER)]


def test_pem_agrees_with_cryptography_on_fullchain() -> None:
    data = "".join(pem_of(c) for c in sample_chain()).encode()
    theirs = x509.load_pem_x509_certificates(data)
    assert [certhook_view(c) for c in load_pem(data)] == [cryptography_view(c) for c in theirs]


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: "no certificate here\n", "no PEM CERTIFICATE block"),
        (lambda t: t.split("-----END")[0], "certificate 1: no -----END CERTIFICATE----- line"),
        (lambda t: t.replace("M", "*", 1), "certificate 1: bad base64"),
        (lambda t: t.replace("\n-----END", "A\n-----END"), "certificate 1: bad base64"),
        (lambda t: t + t.replace("MII", "MIH", 1), "certificate 2: "),
        (
            lambda t: "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            "certificate 1: bad base64",
        ),
        (
            lambda t: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "certificate 1: ",
        ),
    ],
)
def test_pem_errors_name_the_source(mangle: Callable[[str], str], message: str) -> None:
    with pytest.raises(ParseError) as info:
        load_pem(mangle(pem_of(sample_chain()[0])), source="/etc/x/fullchain.pem")
    assert str(info.value).startswith(f"/etc/x/fullchain.pem: {message}")
    assert info.value.source == "/etc/x/fullchain.pem"


def test_pem_mismatched_end_and_many_unterminated_blocks() -> None:
    leaf = pem_of(sample_chain()[0])
    with pytest.raises(ParseError, match="certificate 1: no -----END CERTIFICATE----- line"):
        load_pem(leaf.replace("END CERTIFICATE", "END PRIVATE KEY"))
    # Each BEGIN without an END must not rescan the rest of the text.
    noise = "-----BEGIN JUNK-----\n" * 50_000
    assert len(load_pem(leaf + noise)) == 1
    with pytest.raises(ParseError, match="certificate 2: no -----END"):
        load_pem(leaf + noise + leaf.split("-----END")[0])


def test_load_pem_file(tmp_path: Any) -> None:
    path = tmp_path / "fullchain.pem"
    path.write_text("".join(pem_of(c) for c in sample_chain()))
    assert len(load_pem_file(path)) == 2 == len(load_pem_file(str(path)))
    with pytest.raises(LocalError, match=re.escape(str(tmp_path / "missing.pem"))):
        load_pem_file(tmp_path / "missing.pem")
    with pytest.raises(LocalError, match="Is a directory"):
        load_pem_file(tmp_path)
    (tmp_path / "bad.pem").write_text("junk")
    with pytest.raises(ParseError, match=re.escape(f"{tmp_path / 'bad.pem'}: no PEM")):
        load_pem_file(tmp_path / "bad.pem")


# ---------------------------------------------------------------- certbot


@pytest.mark.slow
@pytest.mark.parametrize(("key_type", "size"), [("ecdsa", 384), ("rsa", 2048)])
def test_certbot_certificates_output(certbot: Any, key_type: str, size: int) -> None:
    certbot.certonly(
        "www.example.test",
        "example.test",
        "a.example.test",
        key_type=key_type,
        size=size,
        cert_name="lineage",
    )
    live = certbot.config_dir / "live" / "lineage"
    listing = certbot.certificates()
    now = datetime.datetime.now(UTC)
    cert = load_pem_file(live / "cert.pem")[0]
    chain = load_pem_file(live / "fullchain.pem")
    assert chain[0] == cert and chain[0].issuer_der == chain[1].subject_der
    assert f"Serial Number: {cert.serial_hex}\n" in listing
    assert f"Identifiers: {' '.join(cert.identifiers)}\n" in listing
    days = re.search(r"VALID: (\d+) days", listing)
    assert days and int(days.group(1)) == cert.days_left(now)
    assert (cert.public_key_type, cert.public_key_bits) == (
        "ecdsa" if key_type == "ecdsa" else "rsa",
        size,
    )
    for parsed in chain:
        assert certhook_view(parsed) == cryptography_view(
            x509.load_der_x509_certificate(parsed.der)
        )
