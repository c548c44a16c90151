"""``--format prometheus``: text exposition for node-exporter's textfile collector.

Metric names follow blackbox_exporter's where they mean the same thing
(``probe_success``, ``probe_duration_seconds``,
``probe_ssl_earliest_cert_expiry``, ``probe_ssl_last_chain_expiry_timestamp_seconds``,
``probe_tls_version_info``, ``probe_ssl_last_chain_info``); the rest are
``certhook_*``. One file holds many targets, so every sample carries the
labels ``target``, ``host``, ``port``, ``protocol`` (and ``servername``
when one was given). Samples of a family are grouped under one HELP/TYPE
pair, as the exposition format requires.

Every series of a certificate that was read is written whether or not it
has expired (blackbox_exporter #1119 drops them once the chain no longer
verifies): certhook verifies the chain without the clock, so an expired
certificate keeps its expiry, notBefore and lifetime series. notBefore and
lifetime let a rule alert on a fraction of the lifetime left, e.g.
``(certhook_cert_not_after_timestamp_seconds - time()) /
certhook_cert_lifetime_seconds < 0.2333``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional, Union

from certhook.probe.result import STATUSES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from certhook.probe.result import ProbeOptions, ProbeResult

__all__ = ["escape_label", "render_prometheus"]

_Value = Optional[Union[int, float]]
_Extra = Callable[["ProbeResult"], Optional[dict[str, str]]]


def escape_label(value: str) -> str:
    """A label value escaped for the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(result: ProbeResult, extra: dict[str, str] | None = None) -> str:
    target = result.target
    pairs = {"target": target.label, "host": target.host, "port": str(target.port),
             "protocol": target.protocol}
    if target.servername:
        pairs["servername"] = target.servername
    pairs.update(extra or {})
    return ",".join(f'{key}="{escape_label(value)}"' for key, value in pairs.items())


def _bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _stamp(result: ProbeResult, attribute: str) -> int | None:
    if attribute == "validity_not_before":
        moment = result.validity.not_before if result.validity else None
    else:
        moment = getattr(result, attribute)
    return None if moment is None else int(moment.timestamp())


def _tls_version(result: ProbeResult) -> dict[str, str] | None:
    version = result.tls_version
    if not version:
        return None
    # blackbox_exporter (Go's crypto/tls) says "TLS 1.3" where OpenSSL says "TLSv1.3".
    return {"version": version.replace("TLSv", "TLS ") if version.startswith("TLSv") else version}


def _chain_info(result: ProbeResult) -> dict[str, str] | None:
    leaf = result.leaf
    if leaf is None:
        return None
    return {
        "fingerprint_sha256": leaf.fingerprint_sha256,
        "subject": leaf.subject,
        "issuer": leaf.issuer,
        "subjectalternative": ",".join([*leaf.san_dns, *leaf.san_ip]),
        "serialnumber": leaf.serial_hex,
    }


def _key_type(result: ProbeResult) -> dict[str, str] | None:
    return {"key_type": result.leaf.public_key_type} if result.leaf else None


# name, help, value of a result (None: no sample), extra labels (None: no sample)
_FAMILIES: list[tuple[str, str, Callable[[ProbeResult], _Value], _Extra | None]] = [
    ("probe_success", "Whether the TLS endpoint could be reached and read (1) or not (0).",
     lambda r: int(r.status != "unknown"), None),
    ("probe_duration_seconds", "How long the probe took, in seconds.",
     lambda r: round(r.elapsed, 6), None),
    ("probe_ssl_earliest_cert_expiry",
     "Earliest notAfter among the certificates the server sent, as a Unix timestamp.",
     lambda r: _stamp(r, "earliest_chain_expiry"), None),
    ("probe_ssl_last_chain_expiry_timestamp_seconds",
     "Earliest notAfter in the chain that verified to a trust anchor, as a Unix timestamp.",
     lambda r: _stamp(r, "verified_chain_expiry"), None),
    ("probe_tls_version_info", "The TLS version negotiated.", lambda r: 1, _tls_version),
    ("probe_ssl_last_chain_info", "The served leaf certificate.", lambda r: 1, _chain_info),
    ("certhook_status", "certhook's verdict: 0 ok, 1 warning, 2 critical, 3 unknown.",
     lambda r: STATUSES[r.status], None),
    ("certhook_cert_not_after_timestamp_seconds",
     "notAfter of the served leaf certificate, as a Unix timestamp.",
     lambda r: _stamp(r, "not_after"), None),
    ("certhook_cert_not_before_timestamp_seconds",
     "notBefore of the served leaf certificate, as a Unix timestamp.",
     lambda r: _stamp(r, "validity_not_before"), None),
    ("certhook_cert_lifetime_seconds",
     "Lifetime of the served leaf certificate (notAfter - notBefore), in seconds.",
     lambda r: r.lifetime_seconds, None),
    ("certhook_cert_renewal_due_timestamp_seconds",
     "When the ACME client should have renewed the leaf (certbot's rule), as a Unix timestamp.",
     lambda r: _stamp(r, "renewal_due"), None),
    ("certhook_cert_renewal_overdue", "Whether the served leaf is past its renewal point (1)"
     " or not (0).", lambda r: _bool(r.renewal_overdue), None),
    ("certhook_cert_days_left", "Whole days until the leaf certificate expires (negative once"
     " expired).", lambda r: r.days_left, None),
    ("certhook_cert_name_ok", "Whether the certificate matches the expected name (1) or not (0).",
     lambda r: _bool(r.name_ok), None),
    ("certhook_cert_trusted", "Whether the served chain verifies to a trusted root (1) or not"
     " (0).", lambda r: _bool(r.trusted), None),
    ("certhook_cert_self_signed", "Whether the leaf certificate is self-signed (1) or not (0).",
     lambda r: _bool(r.self_signed), None),
    ("certhook_cert_key_bits", "Size of the leaf certificate's public key, in bits.",
     lambda r: r.leaf.public_key_bits if r.leaf else None, _key_type),
    ("certhook_cert_local_match", "Whether the served leaf is certbot's current certificate"
     " for the name (1) or not (0).", lambda r: _bool(r.local_match), None),
]


def render_prometheus(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    """Every metric family with a sample per target that has a value for it."""
    lines: list[str] = []
    for name, help_text, value_of, extra_of in _FAMILIES:
        samples = []
        for result in results:
            value = value_of(result)
            extra = extra_of(result) if extra_of is not None else {}
            if value is None or extra is None:
                continue
            samples.append(f"{name}{{{_labels(result, extra)}}} {value}")
        if samples:
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples]
    return "\n".join(lines) + "\n" if lines else ""
