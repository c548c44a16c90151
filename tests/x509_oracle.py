"""The oracles of certhook.x509's tests: pyca/cryptography and certbot itself.

``mint`` makes certificates with cryptography; ``check`` reads one back with
certhook and asserts that every field equals cryptography's view of the same
bytes and that ``identifiers`` equals what certbot's own code derives.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from certhook.x509 import Certificate, load_der

UTC = datetime.timezone.utc
DER = serialization.Encoding.DER

# ---------------------------------------------------------------- minting

KEYS: dict[str, Callable[[], Any]] = {
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
    "rsa4096": lambda: rsa.generate_private_key(65537, 4096),
    "p192": lambda: ec.generate_private_key(ec.SECP192R1()),
    "p224": lambda: ec.generate_private_key(ec.SECP224R1()),
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "k256": lambda: ec.generate_private_key(ec.SECP256K1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()),
    "brainpool512": lambda: ec.generate_private_key(ec.BrainpoolP512R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
    "dsa2048": lambda: dsa.generate_private_key(2048),
}


@functools.cache
def private_key(kind: str) -> Any:
    return KEYS[kind]()


def name(*attrs: tuple[Any, ...]) -> x509.Name:
    return x509.Name([x509.NameAttribute(*attr) for attr in attrs])


def mint(
    *,
    key: str = "p256",
    subject: x509.Name | None = None,
    issuer: x509.Name | None = None,
    serial: int = 0x7D14055FD39767CA,
    not_before: datetime.datetime = datetime.datetime(2024, 1, 1, tzinfo=UTC),
    not_after: datetime.datetime = datetime.datetime(2024, 4, 1, 12, 30, 5, tzinfo=UTC),
    sans: list[x509.GeneralName] | None = None,
    ca: bool | None = None,
    key_ids: bool = True,
    digest: hashes.HashAlgorithm | None = None,
    pss: bool = False,
) -> x509.Certificate:
    signer = private_key(key)
    subject = name((NameOID.COMMON_NAME, "example.org")) if subject is None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject if issuer is None else issuer)
        .public_key(signer.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca, 0 if ca else None), True)
    if key_ids:
        ski = x509.SubjectKeyIdentifier.from_public_key(signer.public_key())
        builder = builder.add_extension(ski, critical=False)
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
        builder = builder.add_extension(aki, critical=False)
    if isinstance(signer, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return builder.sign(signer, None)
    if pss:
        pad = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
        return builder.sign(signer, hashes.SHA256(), rsa_padding=pad)
    return builder.sign(signer, digest or hashes.SHA256())


# ---------------------------------------------------------------- oracles


def extension_value(cert: x509.Certificate, cls: type[Any]) -> Any:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def cryptography_view(cert: x509.Certificate) -> dict[str, Any]:
    """Every Certificate field, as cryptography sees the same bytes."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        key_view: tuple[str, int, str | None] = ("rsa", key.key_size, None)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_view = ("ecdsa", key.curve.key_size, key.curve.name)
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_view = ("ed25519", 256, None)
    elif isinstance(key, ed448.Ed448PublicKey):
        key_view = ("ed448", 456, None)
    elif isinstance(key, dsa.DSAPublicKey):
        key_view = ("dsa", key.key_size, None)
    else:
        key_view = ("unknown", 0, None)
    san = extension_value(cert, x509.SubjectAlternativeName)
    basic = extension_value(cert, x509.BasicConstraints)
    ski = extension_value(cert, x509.SubjectKeyIdentifier)
    aki = extension_value(cert, x509.AuthorityKeyIdentifier)
    points = extension_value(cert, x509.CRLDistributionPoints)
    crl_urls = tuple(
        name.value for point in points or () for name in point.full_name or ()
        if isinstance(name, x509.UniformResourceIdentifier)
        and name.value.lower().startswith(("http://", "https://"))
    )
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    issuer_cns = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    sig_oid = cert.signature_algorithm_oid
    return {
        "der": cert.public_bytes(DER),
        "version": cert.version.value + 1,
        "serial_number": cert.serial_number,
        "issuer": cert.issuer.rfc4514_string(),
        "subject": cert.subject.rfc4514_string(),
        "subject_cn": cns[0].value if cns else None,
        "issuer_cn": issuer_cns[0].value if issuer_cns else None,
        "not_valid_before_utc": cert.not_valid_before_utc,
        "not_valid_after_utc": cert.not_valid_after_utc,
        "san_dns": tuple(san.get_values_for_type(x509.DNSName)) if san else (),
        "san_ip": tuple(str(a) for a in san.get_values_for_type(x509.IPAddress)) if san else (),
        "public_key_type": key_view[0],
        "public_key_bits": key_view[1],
        "curve": key_view[2],
        "signature_algorithm_oid": sig_oid.dotted_string,
        # certhook's one deliberate difference: the dotted OID, not "Unknown OID".
        "signature_algorithm": (
            sig_oid.dotted_string if sig_oid._name == "Unknown OID" else sig_oid._name
        ),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "is_ca": basic.ca if basic else None,
        "subject_key_identifier": ski.digest if ski else None,
        "authority_key_identifier": aki.key_identifier if aki else None,
        "subject_der": cert.subject.public_bytes(),
        "issuer_der": cert.issuer.public_bytes(),
        "crl_urls": crl_urls,
    }


def certhook_view(cert: Certificate) -> dict[str, Any]:
    return {key: getattr(cert, key) for key in Certificate.__dataclass_fields__}


def certbot_identifiers(cert: x509.Certificate) -> tuple[str, ...] | None:
    """What `certbot certificates` lists as Identifiers; None if certbot refuses."""
    from certbot import errors
    from certbot._internal import san

    try:
        dns, addresses = san.from_x509(cert.subject, cert.extensions)
    except (errors.ConfigurationError, ValueError):  # ValueError: a NUL in the CN
        return None
    return tuple(str(item) for item in [*dns, *addresses])


def check(cert: x509.Certificate) -> Certificate:
    """Parse cert's DER with certhook; every field must equal cryptography's."""
    ours = load_der(cert.public_bytes(DER))
    assert certhook_view(ours) == cryptography_view(cert)
    expected = certbot_identifiers(cert)
    if expected is not None:
        assert ours.identifiers == expected
    return ours


def replace_bytes(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and data.count(old) == 1
    return data.replace(old, new)
