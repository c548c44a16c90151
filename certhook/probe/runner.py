"""Probe one target, or many at once on a bounded pool of threads.

Trust takes one handshake in the common case. The first handshake verifies
(``CERT_REQUIRED``, hostname checking off, the clock ignored): when it
succeeds the chain is trusted and the certificates are at hand. Only when
verification fails is a second handshake made, without verification, to the
same address, to read the certificate that failed.

Threads rather than asyncio: the work is waiting on sockets, OpenSSL
releases the GIL during handshakes, and in the benchmark (``bench/probe.py``)
a bare thread-pool client is as fast as a bare asyncio one, or faster.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from certhook.errors import ParseError, RemoteError
from certhook.probe import checks, lifetime
from certhook.probe.addresses import address_row, combine
from certhook.probe.authority import ask_ca
from certhook.probe.net import (
    AddressRefused,
    Handshake,
    VerifyFailed,
    handshake,
    resolve,
    tls_context,
)
from certhook.probe.result import ProbeOptions, ProbeResult
from certhook.probe.targets import expected_fingerprints
from certhook.x509 import Certificate, load_der

if TYPE_CHECKING:
    from certhook.probe.targets import Target

__all__ = ["DEFAULT_CONCURRENCY", "probe", "probe_many"]

#: Probes in flight at once. Each is mostly waiting on the network; a
#: handshake costs the client about a millisecond of CPU, so 32 keep two
#: cores far from busy while covering 200 targets in a few round trips.
DEFAULT_CONCURRENCY = 32

_DEFAULT_OPTIONS = ProbeOptions()
#: Addresses of one target probed at once. Handshakes to the addresses of a
#: name run side by side, so that the target costs about one handshake, not
#: one per address; bounded, since each of the probes in flight may have
#: up to :data:`~certhook.probe.net.MAX_ADDRESSES` of them.
_ADDRESS_THREADS = 4
_REFUSED = "address not allowed: "


def _unknown(target: Target, options: ProbeOptions, error: str, start: float,
             address: str | None = None) -> ProbeResult:
    return ProbeResult(
        target=target, status="unknown", reasons=(), error=error, leaf=None, chain=(),
        days_left=None, not_after=None, earliest_chain_expiry=None, name_ok=None,
        trusted=None, trust_error=None, self_signed=None, tls_version=None, cipher=None,
        local_match=None, address=address, elapsed=time.monotonic() - start,
        name_check=options.name_check,
    )


def _connect_and_verify(
    target: Target, options: ProbeOptions, deadline: float, address: str | None
) -> tuple[Handshake, VerifyFailed | None]:
    try:
        return handshake(target, tls_context(True, options.ca_file), deadline,
                         options.allow_address, address), None
    except VerifyFailed as failed:
        again = handshake(target, tls_context(False), deadline, options.allow_address,
                          address=failed.address)
        return again, failed


@functools.lru_cache(maxsize=512)
def _load(der: bytes) -> Certificate:
    """Parse a certificate, once: intermediates and roots recur across targets,
    and the leaf is both in the sent and in the verified chain. Certificates
    are immutable, so threads can share them; failures are not cached."""
    return load_der(der, "certificate")


def _parse_chain(ders: Sequence[bytes], what: str) -> tuple[list[Certificate], list[str]]:
    certs, problems = [], []
    for index, der in enumerate(ders):
        try:
            certs.append(_load(der))
        except ParseError as exc:
            problems.append(f"unreadable {what} certificate {index + 1}: {exc.reason}")
    return certs, problems


def _pinned(target: Target, options: ProbeOptions) -> tuple[str, ...] | None:
    """The addresses ``--resolve`` gives for the target, if any."""
    if not options.resolve:
        return None
    host = target.host.lower().rstrip(".")
    return options.resolve.get((host, target.port)) or options.resolve.get((host, 0))


def probe(target: Target, options: ProbeOptions = _DEFAULT_OPTIONS) -> ProbeResult:
    """Connect to ``target``, read its certificate chain and judge it.

    With ``options.all_addresses`` (the default) every address of the host
    is probed, at once, each within the one deadline, and the result is the
    worst of them (:func:`certhook.probe.addresses.combine`); else the
    first address that answers. Never raises for a fault of the network or
    the peer: the result is then ``unknown`` with ``error`` set. A CA file
    that cannot be loaded raises :class:`~certhook.errors.LocalError`.
    """
    start = time.monotonic()
    deadline = start + options.timeout
    pinned = _pinned(target, options)
    if pinned is None and not options.all_addresses:
        return _with_row(_probe_address(target, options, None, start, deadline))
    try:
        found = list(pinned) if pinned else resolve(target.host, target.port, deadline)
    except RemoteError as exc:
        return _unknown(target, options, str(exc), start)
    if not options.all_addresses:
        found = found[:1]
    if len(found) == 1:
        return _with_row(_probe_address(target, options, found[0], start, deadline))
    with ThreadPoolExecutor(min(len(found), _ADDRESS_THREADS), "certhook-address") as pool:
        results = list(pool.map(
            lambda address: _probe_address(target, options, address, start, deadline), found))
    # An address the guard refused (the server's SSRF guard) was not probed:
    # a note, not a verdict, as long as another address was.
    refused = [result.address or "" for result in results if result.error is not None
               and result.error.startswith(_REFUSED) and not result.reasons]
    probed = [result for result in results if result.address not in refused]
    if not probed:
        return _unknown(target, options, f"{_REFUSED}{', '.join(refused)}", start)
    notes = [f"not probed: {', '.join(refused)} (address not allowed)"] if refused else []
    return combine(probed, time.monotonic() - start, notes)


def _with_row(result: ProbeResult) -> ProbeResult:
    return replace(result, addresses=(address_row(result),)) if result.address else result


def _probe_address(target: Target, options: ProbeOptions, address: str | None, start: float,
                   deadline: float) -> ProbeResult:
    """Probe one address (``None``: the first of the host's that answers)."""
    try:
        shake, failed = _connect_and_verify(target, options, deadline, address)
    except AddressRefused as exc:
        return _unknown(target, options, f"{_REFUSED}{address}" if address else str(exc),
                        start, address)
    except RemoteError as exc:
        return _unknown(target, options, str(exc), start, address)
    sent, unreadable = _parse_chain(shake.chain, "served")
    if not shake.chain or not sent or sent[0].der != shake.chain[0]:
        error = unreadable[0] if unreadable else "the server sent no certificate"
        return _unknown(target, options, error, start, shake.address)
    verified, _ = _parse_chain(shake.verified or (), "verified")
    return _judge(target, options, shake, failed, sent, verified, unreadable, start)


def _judge(
    target: Target, options: ProbeOptions, shake: Handshake, failed: VerifyFailed | None,
    sent: list[Certificate], verified: list[Certificate], unreadable: list[str], start: float,
) -> ProbeResult:
    now = options.clock() if options.clock is not None else datetime.now(timezone.utc)
    leaf = sent[0]
    validity = lifetime.judge(leaf, verified[1:] if verified else sent[1:], now, options.warn,
                              options.crit, options.renew_before)
    findings = list(validity.findings)
    name_ok, name_problems = checks.name_findings(leaf, target.name_to_check, options.name_check)
    findings += name_problems
    trust_error = None
    if failed is not None:
        trust_error = checks.describe_untrusted(failed.code, failed.message, sent,
                                                shake.chain_sent)
        findings.append(checks.Finding("critical", f"untrusted: {trust_error}"))
    local_match = _local_match(target, options, leaf, findings)
    findings += checks.weakness_findings(leaf, sent, shake.tls_version)
    findings += [checks.Finding("warning", text) for text in checks.chain_order_problems(sent)]
    findings += [
        checks.Finding("warning", f"incomplete chain: the server does not send the"
                                  f" intermediate {cert.subject}; clients without it fail")
        for cert in checks.unsent_intermediates(sent, verified)
    ]
    findings += [checks.Finding("warning", text) for text in unreadable]
    notes: list[str] = []
    ca = ask_ca(leaf, verified or sent, options, now)  # ARI and CRL, when asked for
    findings += [checks.Finding(severity, text) for severity, text in ca.findings]
    notes += ca.notes
    if shake.chain_truncated:
        findings.append(checks.Finding("warning", "the server sent more certificates than"
                                                  " certhook reads; the rest were ignored"))
    if not shake.chain_sent:
        notes.append(f"Python {sys.version_info[0]}.{sys.version_info[1]} shows only the leaf"
                     " of the served chain: chain order and completeness were not checked")
    severities = {finding.severity for finding in findings}
    status = "critical" if "critical" in severities else "warning" if severities else "ok"
    # Critical findings first, each list in the order found.
    ordered = sorted(findings, key=lambda finding: finding.severity != "critical")
    return ProbeResult(
        target=target,
        status=status,
        reasons=tuple(finding.text for finding in ordered),
        error=None,
        leaf=leaf,
        chain=tuple(sent),
        days_left=leaf.days_left(now),
        not_after=leaf.not_valid_after_utc,
        earliest_chain_expiry=min(cert.not_valid_after_utc for cert in sent),
        name_ok=name_ok,
        trusted=failed is None,
        trust_error=trust_error,
        self_signed=leaf.self_signed,
        tls_version=shake.tls_version,
        cipher=shake.cipher,
        local_match=local_match,
        address=shake.address,
        elapsed=time.monotonic() - start,
        verified_chain_expiry=(
            min(cert.not_valid_after_utc for cert in verified) if verified else None
        ),
        name_check=options.name_check,
        notes=tuple(notes),
        validity=validity,
        ari_window=ca.ari_window,
        revoked=ca.revocation.revoked if ca.revocation else None,
        revocation_checked_by=ca.revocation.checked_by if ca.revocation else None,
    )


def _local_match(target: Target, options: ProbeOptions, leaf: Certificate,
                 findings: list[checks.Finding]) -> bool | None:
    if options.local_fingerprints is None:
        return None
    expected = expected_fingerprints(options.local_fingerprints, target.name_to_check)
    if expected is None:
        return None
    if leaf.fingerprint_sha256 in expected:
        return True
    wanted = " or ".join(sorted(fingerprint[:16] for fingerprint in expected))
    findings.append(checks.Finding(
        "critical",
        f"not the current certbot certificate for {target.name_to_check}: serving sha256"
        f" {leaf.fingerprint_sha256[:16]}..., certbot holds {wanted}... (reload the service?)",
    ))
    return False


def probe_many(
    targets: Sequence[Target],
    options: ProbeOptions = _DEFAULT_OPTIONS,
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[int, int, ProbeResult], None] | None = None,
) -> list[ProbeResult]:
    """Probe every target, at most ``concurrency`` at once; results in input order.

    ``progress(done, total, result)`` is called as each probe finishes, from
    the calling thread.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, not {concurrency}")
    if not targets:
        return []
    # Load the contexts once, here, so that a bad CA file raises before any probe.
    tls_context(True, options.ca_file)
    tls_context(False)
    results: list[ProbeResult | None] = [None] * len(targets)
    executor = ThreadPoolExecutor(min(concurrency, len(targets)), "certhook-probe")
    try:
        futures = {executor.submit(probe, target, options): index
                   for index, target in enumerate(targets)}
        for done, future in enumerate(as_completed(futures), 1):
            result = results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(targets), result)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    return [result for result in results if result is not None]
