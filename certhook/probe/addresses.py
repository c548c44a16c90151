"""Every address behind a name: one verdict from the verdicts of each address.

A name with several A and AAAA records is served by several machines (or
several listeners), and a renewal deployed on some of them is the failure
users most often miss: a probe of "the" address sees one of them, a
different one each time. certhook probes each address (at most
:data:`certhook.probe.net.MAX_ADDRESSES`) and reports the worst, by
:data:`~certhook.probe.result.SEVERITY`.

Pure: probe results in, one result out; :mod:`.runner` does the I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from certhook.probe.result import SEVERITY, AddressResult, ProbeResult

__all__ = ["address_row", "combine"]


def address_row(result: ProbeResult) -> AddressResult:
    """The ``addresses`` row of a probe of one address."""
    return AddressResult(
        address=result.address or result.target.host,
        status=result.status,
        fingerprint=result.leaf.fingerprint_sha256 if result.leaf is not None else None,
        reasons=result.reasons,
        error=result.error,
    )


def _problems(result: ProbeResult) -> tuple[str, ...]:
    return result.reasons or ((result.error,) if result.error else ())


def _where(addresses: list[str], total: int) -> str:
    shown = ", ".join(addresses[:-1]) + " and " + addresses[-1] if len(addresses) > 1 \
        else addresses[0]
    count = f"{len(addresses)} of {total} addresses"
    return f"on {shown}: {count}"


def combine(results: Sequence[ProbeResult], elapsed: float,
            notes: Sequence[str] = ()) -> ProbeResult:
    """One result for a target from the results of its addresses, in resolver order.

    The status is the worst; the certificate fields are those of the first
    of the worst addresses that served a certificate. A reason every address shares is given as
    is; one that only some addresses have says where, "(on ::1: 1 of 3
    addresses)". ``error`` is set only when no address served a certificate.
    """
    if not results:
        raise ValueError("combine: no results")
    rows = tuple(address_row(result) for result in results)
    status = max((result.status for result in results), key=SEVERITY.__getitem__)
    # The certificate shown: the first of the worst addresses that served one.
    served_any = [result for result in results if result.leaf is not None] or list(results)
    worst = max(served_any, key=lambda result: SEVERITY[result.status])
    total = len(results)
    where: dict[str, list[str]] = {}
    # Worst addresses first, so that critical reasons lead as in a single probe.
    for result in sorted(results, key=lambda result: -SEVERITY[result.status]):
        for text in _problems(result):
            where.setdefault(text, []).append(result.address or result.target.host)
    reasons = tuple(text if len(found) == total else f"{text} ({_where(found, total)})"
                    for text, found in where.items())
    served = {row.fingerprint for row in rows if row.fingerprint}
    extra = list(notes)
    if len(served) > 1:
        extra.append(f"the {total} addresses serve {len(served)} different certificates")
    everyone_failed = all(result.leaf is None for result in results)
    return replace(
        worst,
        status=status,
        reasons=() if everyone_failed and len(where) <= 1 and worst.error else reasons,
        error=worst.error if everyone_failed else None,
        elapsed=elapsed,
        notes=tuple(dict.fromkeys((*worst.notes, *extra))),
        addresses=rows,
    )
