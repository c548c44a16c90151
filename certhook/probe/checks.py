"""What a probe concludes from a certificate chain: name check, chain shape, findings.

Pure functions of parsed certificates and the clock; no I/O.

Name matching follows RFC 6125 section 6.4 (and RFC 9525, which replaces
it): case-insensitive, one trailing dot ignored; a wildcard only as the
whole left-most label (``*.example.org``), matching exactly one non-empty
label, never in a pattern with fewer than three labels (``*.org``); partial
wildcards (``w*.example.org``, ``*w.example.org``) never match. An IP
address matches iPAddress SANs only, never a DNS name or the CN.

A presented name is judged as clients judge it (pyca/cryptography's
verifier, browsers, x509-limbo's name cases): it must be a preferred-syntax
host name in ASCII (RFC 5280 section 4.2.1.6 and RFC 1034 section 3.5:
letters, digits and hyphens, labels of 1 to 63 octets). A dNSName holding
raw UTF-8 (an IA5String may not) or an underscore matches nothing; only the
reference name, which a user types, is IDNA-encoded before comparing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    from certhook.probe.lifetime import Threshold
    from certhook.x509 import Certificate

__all__ = [
    "NAME_CHECKS",
    "Finding",
    "chain_order_problems",
    "describe_untrusted",
    "match_dns_name",
    "match_name",
    "name_findings",
    "presented_name_ok",
    "unsent_intermediates",
    "validity_findings",
    "weakness_findings",
]

#: ``--name-check`` modes. ``cn_san``: the SAN DNS names (the CN only when
#: the certificate has none, RFC 6125 section 6.4.4); ``cn``: the CN alone,
#: as PRTG's "CN" validation; ``none``: no check.
NAME_CHECKS = ("cn_san", "cn", "none")

# OpenSSL verify codes (x509_vfy.h) the probe explains further.
_UNABLE_TO_GET_ISSUER_CERT = 2
_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_SELF_SIGNED_IN_CHAIN = 19

# CA/Browser Forum Baseline Requirements 6.1.5: RSA moduli of 2048 bits at
# least; NIST P-256 is the smallest curve they allow.
_MIN_BITS = {"rsa": 2048, "dsa": 2048, "ecdsa": 256}
_WEAK_HASHES = ("md2", "md5", "sha1")
# RFC 8996 deprecates TLS 1.0 and 1.1 (and SSL 3.0 went with RFC 7568).
_DEPRECATED_TLS = ("SSLv3", "TLSv1", "TLSv1.1")
_SHOW_NAMES = 6
# certhook.x509's mark on a curve given by its parameters rather than its OID.
_EXPLICIT = " (explicit parameters)"


@dataclass(frozen=True)
class Finding:
    """One thing wrong, with the status it brings: ``warning`` or ``critical``."""

    severity: str
    text: str


def _strip(name: str) -> str:
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def _reference(name: str) -> str:
    """The name the user asked for, as A-labels: what a client sends and compares."""
    name = _strip(name.strip())
    if not name.isascii():
        try:  # the certificate holds A-labels (RFC 5280 section 7.2)
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    return name


def _host_label(label: str) -> bool:
    # RFC 1034 section 3.5 (with RFC 1123 section 2.1's leading digit):
    # letters, digits, hyphens inside; pyca's verifier has the same rule.
    return (0 < len(label) <= 63 and label[0] != "-" and label[-1] != "-"
            and all(c.isascii() and (c.isalnum() or c == "-") for c in label))


def presented_name_ok(pattern: str) -> bool:
    """Whether a dNSName is a name clients can match at all: ASCII host-name
    syntax, a wildcard only as the whole left-most label."""
    labels = _strip(pattern).split(".")
    if labels[0] == "*":
        labels = labels[1:]
    return bool(labels) and all(_host_label(label) for label in labels)


def match_dns_name(pattern: str, name: str) -> bool:
    """Whether a presented DNS identifier ``pattern`` matches the reference ``name``.

    ``pattern`` is taken as the certificate holds it (no IDNA encoding: a
    raw UTF-8 or underscore dNSName never matches); ``name`` may be a U-label
    name, encoded with IDNA before comparing.
    """
    name = _reference(name)
    if not name or "*" in name or not presented_name_ok(pattern):
        return False
    pattern = _strip(pattern)
    if "*" not in pattern:
        return pattern == name
    labels, wanted = pattern.split("."), name.split(".")
    if len(labels) < 3:
        return False
    return len(wanted) == len(labels) and bool(wanted[0]) and wanted[1:] == labels[1:]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]").split("%")[0])
    except ValueError:
        return None


def match_name(cert: Certificate, name: str, mode: str) -> bool | None:
    """Check ``name`` against ``cert`` in ``mode`` (:data:`NAME_CHECKS`); None for ``none``."""
    if mode == "none":
        return None
    address = _ip(name)
    if mode == "cn":
        cn = cert.subject_cn or ""
        if address is not None:
            return _ip(cn) == address
        return match_dns_name(cn, name)
    if address is not None:
        return any(_ip(san) == address for san in cert.san_ip)
    presented = cert.san_dns or ((cert.subject_cn,) if cert.subject_cn else ())
    return any(match_dns_name(pattern, name) for pattern in presented)


def name_findings(cert: Certificate, name: str, mode: str) -> tuple[bool | None, list[Finding]]:
    """The name check of :func:`match_name` and what it finds wrong.

    A mismatch is critical. So is a certificate without a DNS name or IP
    address in subjectAltName, in every mode but ``none``: browsers and
    RFC 9525 ignore the CN, so the certificate fails for them even when the
    CN matches (``cn_san`` and ``cn`` still match the CN, as PRTG's channel
    does: the name channel keeps its meaning, the status does not pass).
    """
    ok = match_name(cert, name, mode)
    findings = []
    if ok is False:
        findings.append(Finding(
            "critical", f"name mismatch: {name} is not in {describe_names(cert, mode)}"))
    if ok is not None and not cert.san_dns and not cert.san_ip:
        findings.append(Finding("critical", "no subjectAltName: modern clients reject it"
                                            " (they ignore the CN; RFC 9525 dropped it)"))
    return ok, findings


def describe_names(cert: Certificate, mode: str) -> str:
    """The names a mismatch message quotes."""
    if mode == "cn":
        return f"CN {cert.subject_cn or '(none)'}"
    names = list(cert.san_dns) + list(cert.san_ip)
    if not names:
        return f"CN {cert.subject_cn} (no SAN)" if cert.subject_cn else "no name at all"
    shown = ", ".join(names[:_SHOW_NAMES])
    more = f" and {len(names) - _SHOW_NAMES} more" if len(names) > _SHOW_NAMES else ""
    return f"SAN {shown}{more}"


def _who(cert: Certificate) -> str:
    return f"CN={cert.subject_cn}" if cert.subject_cn else (cert.subject or "(empty subject)")


def validity_findings(
    leaf: Certificate, others: Sequence[Certificate], now: datetime,
    warn: Threshold | int, crit: Threshold | int, renew_before: float | None = None,
) -> list[Finding]:
    """Expiry of the leaf (and of the chain when a chain certificate ends first),
    and renewal overdue: the findings of :func:`certhook.probe.lifetime.judge`.

    ``others`` is the chain above the leaf that clients use: the verified
    chain when there is one, else what the server sent. A bare ``int`` is a
    number of days, as ``--warn 21``.
    """
    from certhook.probe.lifetime import Threshold, judge

    if isinstance(warn, int):
        warn = Threshold.days(warn)
    if isinstance(crit, int):
        crit = Threshold.days(crit)
    return list(judge(leaf, others, now, warn, crit, renew_before).findings)


def weakness_findings(
    leaf: Certificate, sent: Sequence[Certificate], tls_version: str | None
) -> list[Finding]:
    """Weak key, weak signature hash (leaf and sent intermediates), old protocol."""
    findings = []
    minimum = _MIN_BITS.get(leaf.public_key_type)
    curve = leaf.curve or ""
    explicit = curve.endswith(_EXPLICIT)
    if explicit:
        findings.append(Finding("warning", f"EC key with explicit curve parameters"
                                           f" ({curve[:-len(_EXPLICIT)]} curve): RFC 5480"
                                           " requires a named curve, and many clients refuse"
                                           " the certificate"))
    if minimum and leaf.public_key_bits < minimum and not (explicit and not leaf.public_key_bits):
        findings.append(Finding("warning", f"weak key: {leaf.public_key_type.upper()}"
                                           f" {leaf.public_key_bits} bits (minimum {minimum})"))
    for cert in [leaf, *sent[1:]]:
        # A root's signature on itself is never checked by clients: skip it.
        if cert is not leaf and cert.self_signed:
            continue
        algorithm = cert.signature_algorithm.lower()
        if any(weak in algorithm for weak in _WEAK_HASHES):
            whose = "certificate" if cert is leaf else f"chain certificate {_who(cert)}"
            findings.append(Finding("warning", f"weak signature: {whose} is signed with"
                                               f" {cert.signature_algorithm}"))
    if tls_version in _DEPRECATED_TLS:
        findings.append(Finding("warning", f"deprecated protocol {tls_version} (RFC 8996)"))
    return findings


def chain_order_problems(sent: Sequence[Certificate]) -> list[str]:
    """Where the sent chain breaks the rule that each certificate certifies the one before.

    TLS 1.2 requires that order (RFC 5246 section 7.4.2); TLS 1.3 asks for
    it (RFC 8446 section 4.4.2). OpenSSL reorders, other clients may not.
    """
    problems = []
    for index in range(1, len(sent)):
        if sent[index].subject_der != sent[index - 1].issuer_der:
            problems.append(
                f"chain order: certificate {index + 1} ({_who(sent[index])}) does not"
                f" issue certificate {index} ({_who(sent[index - 1])})"
            )
    return problems


def unsent_intermediates(
    sent: Sequence[Certificate], verified: Sequence[Certificate]
) -> list[Certificate]:
    """Intermediates of the verified path that the server did not send.

    The path verified only because the local store holds them; clients
    without them (most non-browsers) fail.
    """
    subjects = {cert.subject_der for cert in sent}
    return [cert for cert in verified[1:-1] if cert.subject_der not in subjects]


def describe_untrusted(
    code: int, message: str, sent: Sequence[Certificate], chain_sent: bool
) -> str:
    """The trust error, with why: a missing intermediate, an unknown root."""
    text = message
    if not chain_sent or not sent:
        return text
    leaf = sent[0]
    if code in (_UNABLE_TO_GET_ISSUER_CERT, _UNABLE_TO_GET_ISSUER_CERT_LOCALLY):
        if not leaf.self_signed and all(c.subject_der != leaf.issuer_der for c in sent[1:]):
            return (f"{text}: the server did not send the issuer of the certificate"
                    f" ({leaf.issuer}), and it is not a trusted root (missing intermediate?)")
        top = _path_top(sent)
        return f"{text}: the chain ends at {_who(top)}, whose issuer {top.issuer} is not trusted"
    if code == _SELF_SIGNED_IN_CHAIN:
        return f"{text}: the root {_who(_path_top(sent))} is not trusted"
    return text


def _path_top(sent: Sequence[Certificate]) -> Certificate:
    """Follow issuers from the leaf through the sent certificates, as far as they go."""
    current, seen = sent[0], {0}
    while not current.self_signed:
        step = next((i for i, c in enumerate(sent)
                     if i not in seen and c.subject_der == current.issuer_der), None)
        if step is None:
            break
        seen.add(step)
        current = sent[step]
    return current
