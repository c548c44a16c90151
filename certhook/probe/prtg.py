"""``--format prtg``: the JSON of PRTG's "EXE/Script Advanced" sensor.

The channels mirror PRTG's own SSL Certificate sensor, with its standard
lookups, so a certhook sensor reads like the built-in one:

- ``Days to Expiration`` (primary), with ``--warn``/``--crit`` as lower limits
  (in days for this certificate's lifetime when relative);
- ``Common Name Check``, lookup ``prtg.standardlookups.sslcertificatesensor.cncheck``:
  0 CN matches, 1 CN does not match (error), 2 check disabled,
  5 CN/SAN match, 6 CN/SAN do not match (error);
- ``Public Key Length`` in bits, for RSA keys with the lookup
  ``...sslcertificatesensor.publickey`` (1024 weak, 2048 and up good); other
  key types carry no lookup, since PRTG's ECC lookup rates other figures;
- ``Root Authority Trusted``, lookup ``...sslcertificatesensor.trustedroot``:
  0 yes, 1 no (a warning in PRTG);
- ``Self-Signed``, lookup ``...sslcertificatesensor.selfsigned``: 0 no, 1 yes.

certhook adds ``Matches Local Certificate`` (with ``--config-dir``; lookup
``prtg.standardlookups.boolean.statetrueok``, 0 is an error), ``Renewal
Overdue`` (lookup ``certhook.renewaloverdue``, shipped in contrib/prtg: 0 no,
1 the certificate is past the point certbot should have renewed it, a
warning) and ``Status``
(0 ok, 1 warning, 2 critical), whose limits give the sensor certhook's
verdict even where PRTG's lookups are milder (an untrusted root is only a
warning there). A target that could not be probed turns the whole output
into PRTG's error form, ``{"prtg": {"error": 1, "text": ...}}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from certhook.escape import for_terminal
from certhook.probe.output import day_limits
from certhook.probe.result import STATUSES, rank, worst_status

if TYPE_CHECKING:
    from collections.abc import Sequence

    from certhook.probe.result import ProbeOptions, ProbeResult

__all__ = ["RENEWAL_LOOKUP", "render_prtg"]

#: The lookup of the Renewal Overdue channel: contrib/prtg/certhook.renewaloverdue.ovl,
#: copied into PRTG's lookups/custom folder (0 no, 1 overdue: a warning).
RENEWAL_LOOKUP = "certhook.renewaloverdue"

_LOOKUP = "prtg.standardlookups.sslcertificatesensor."
# Common Name Check values of the cncheck lookup.
_CN_OK, _CN_BAD, _CN_OFF, _CN_SAN_OK, _CN_SAN_BAD = 0, 1, 2, 5, 6
# PRTG cuts the sensor message at 2000 characters.
_MAX_TEXT = 2000


def _limit(days: float) -> float | int:
    return int(days) if days == int(days) else round(days, 2)


def _cn_check(result: ProbeResult) -> int:
    if result.name_ok is None:
        return _CN_OFF
    if result.name_check == "cn":
        return _CN_OK if result.name_ok else _CN_BAD
    return _CN_SAN_OK if result.name_ok else _CN_SAN_BAD


def _channels(result: ProbeResult, options: ProbeOptions, prefix: str) -> list[dict[str, Any]]:
    leaf = result.leaf
    assert leaf is not None
    key: dict[str, Any] = {"channel": f"{prefix}Public Key Length", "value": leaf.public_key_bits}
    if leaf.public_key_type == "rsa":
        key["valuelookup"] = _LOOKUP + "publickey"
    else:
        key.update(unit="Custom", customunit="bit")
    warn, crit = day_limits(result, options)
    channels: list[dict[str, Any]] = [
        {
            "channel": f"{prefix}Days to Expiration",
            "value": result.days_left,
            "unit": "Custom",
            "customunit": "days",
            "limitmode": 1,
            "limitminwarning": _limit(warn),
            "limitminerror": _limit(crit),
            "limitwarningmsg": "certificate expires soon",
            "limiterrormsg": "certificate expires very soon or has expired",
        },
        {"channel": f"{prefix}Common Name Check", "value": _cn_check(result),
         "valuelookup": _LOOKUP + "cncheck"},
        key,
        {"channel": f"{prefix}Root Authority Trusted", "value": 0 if result.trusted else 1,
         "valuelookup": _LOOKUP + "trustedroot"},
        {"channel": f"{prefix}Self-Signed", "value": 1 if result.self_signed else 0,
         "valuelookup": _LOOKUP + "selfsigned"},
    ]
    if result.local_match is not None:
        channels.append({"channel": f"{prefix}Matches Local Certificate",
                         "value": 1 if result.local_match else 0,
                         "valuelookup": "prtg.standardlookups.boolean.statetrueok"})
    if result.renewal_overdue is not None:
        channels.append({"channel": f"{prefix}Renewal Overdue",
                         "value": 1 if result.renewal_overdue else 0,
                         "valuelookup": RENEWAL_LOOKUP})
    reasons = for_terminal("; ".join(result.reasons) or "ok")  # shown by PRTG as text
    channels.append({
        "channel": f"{prefix}Status",
        "value": STATUSES[result.status],
        "limitmode": 1,
        "limitmaxwarning": 0,
        "limitmaxerror": 1,
        "limitwarningmsg": reasons,
        "limiterrormsg": reasons,
    })
    return channels


def _text(result: ProbeResult) -> str:
    leaf = result.leaf
    assert leaf is not None
    name = f"CN={leaf.subject_cn}" if leaf.subject_cn else leaf.subject
    head = f"{result.target.label}: {name}, sha256 {leaf.fingerprint_sha256}"
    return for_terminal(f"{head}: {'; '.join(result.reasons)}" if result.reasons else head)


def render_prtg(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    """The sensor JSON: channels for one target, prefixed by target for several."""
    failed = [result for result in results if result.status == "unknown"]
    if failed or not results:
        text = for_terminal("; ".join(f"{r.target.label}: {r.error}" for r in failed)
                            or "no targets")
        body: dict[str, Any] = {"error": 1, "text": text[:_MAX_TEXT]}
    else:
        channels: list[dict[str, Any]] = []
        for result in results:
            prefix = "" if len(results) == 1 else f"{for_terminal(result.target.label)} "
            channels += _channels(result, options, prefix)
        ranked = rank(results)
        if len(results) == 1:
            text = _text(results[0])
        else:
            text = f"{len(results)} targets, worst {worst_status(results)}: " + " | ".join(
                _text(result) for result in ranked)
        body = {"result": channels, "text": text[:_MAX_TEXT]}
    return json.dumps({"prtg": body}, indent=2) + "\n"
