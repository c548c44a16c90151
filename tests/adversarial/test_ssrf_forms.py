"""Every IPv6 form that carries an IPv4 address, decided by the address inside.

The attack (issue 9.8): submit, or make a name resolve to, an IPv6 address
whose packets end up at an internal IPv4 address: ``::127.0.0.1``,
``::ffff:0:169.254.169.254``, ``64:ff9b:1::a9fe:a9fe`` passed the guard.

One table row per form, each with an address the guard must let through
(its IPv4 address is public) and one it must refuse. Both are tested where
the decision is made: ``forbidden_reason``, and the real probe with a test
name resolving to the address and ``connect`` replaced (``no_packets``), so
nothing leaves loopback: a refused address is never tried, an allowed one
is tried (and the replaced connect refuses it).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
import ssrf_helpers
from server_helpers import resolve_names

from certhook.probe import ProbeOptions, Target, probe
from certhook.server.ssrf import forbidden_reason, make_guard

no_packets = ssrf_helpers.no_packets  # the fixture: connect replaced, loopback only

# form, allowed address (public IPv4 inside), refused address, words of its reason
FORMS = [
    # RFC 4291 2.5.5.2
    ("IPv4-mapped", "::ffff:1.1.1.1", "::ffff:169.254.169.254", "169.254.169.254 is link-local"),
    # RFC 4291 2.5.5.1 (deprecated; Linux's sit0 still tunnels ::/96 to the IPv4 address)
    ("IPv4-compatible", "::8.8.8.8", "::127.0.0.1", "127.0.0.1 is loopback"),
    # RFC 2765 2.1
    ("SIIT", "::ffff:0:8.8.8.8", "::ffff:0:169.254.169.254", "169.254.169.254 is link-local"),
    # RFC 6052 2.1: the well-known prefix is a /96
    ("NAT64", "64:ff9b::808:808", "64:ff9b::a00:1", "10.0.0.1 is private"),
    # RFC 3056 2: bits 16-47
    ("6to4", "2002:808:808::1", "2002:7f00:1::1", "127.0.0.1 is loopback"),
    # RFC 4380 4: server in bits 32-63, client = last 32 bits inverted (f7f7:f7f7 is 8.8.8.8)
    ("Teredo", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
     "10.0.0.1 is private"),
    ("Teredo server", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "2001:0:a9fe:a9fe::f7f7:f7f7",
     "169.254.169.254 is link-local"),
]

# Refused outright, whatever the bits inside (see ssrf.py for why).
REFUSED_WHOLE = [
    ("local-use NAT64 (RFC 8215)", "64:ff9b:1::a9fe:a9fe", "local-use NAT64"),
    ("local-use NAT64, public inside", "64:ff9b:1::808:808", "local-use NAT64"),
    ("the rest of ::/8", "64:ff9b:2::808:808", "reserved"),
    ("IPv4-compatible ::1", "::1", "loopback"),
    ("IPv4-compatible ::", "::", "unspecified"),
]


def _probe(monkeypatch: pytest.MonkeyPatch, address: str, guard: Any) -> str:
    resolve_names(monkeypatch, {"form.test": address})
    result = probe(Target("form.test", 443), ProbeOptions(timeout=2.0, allow_address=guard))
    assert result.status == "unknown"
    return result.error or ""


@pytest.mark.parametrize(("form", "allowed", "refused", "why"), FORMS,
                         ids=[row[0] for row in FORMS])
def test_embedded_ipv4_decides(form: str, allowed: str, refused: str, why: str) -> None:
    assert forbidden_reason(allowed) is None
    reason = forbidden_reason(refused)
    assert reason is not None and why in reason and form.split()[0] in reason


@pytest.mark.parametrize(("form", "allowed", "refused", "why"), FORMS,
                         ids=[row[0] for row in FORMS])
def test_probe_at_the_decision_point(form: str, allowed: str, refused: str, why: str,
                                     monkeypatch: pytest.MonkeyPatch,
                                     no_packets: list[Any]) -> None:
    assert "not allowed" in _probe(monkeypatch, refused, make_guard())
    assert no_packets == []
    _probe(monkeypatch, allowed, make_guard())
    assert [ipaddress.ip_address(a[0]) for a in no_packets] == [ipaddress.ip_address(allowed)]


@pytest.mark.parametrize(("what", "address", "why"), REFUSED_WHOLE,
                         ids=[row[0] for row in REFUSED_WHOLE])
def test_refused_whole(what: str, address: str, why: str, monkeypatch: pytest.MonkeyPatch,
                       no_packets: list[Any]) -> None:
    reason = forbidden_reason(address)
    assert reason is not None and why in reason
    assert "not allowed" in _probe(monkeypatch, address, make_guard())
    assert no_packets == []


def test_local_use_nat64_when_the_operator_allows_it(monkeypatch: pytest.MonkeyPatch,
                                                      no_packets: list[Any]) -> None:
    # An IPv6-only host behind its own translator lists the prefix it uses.
    guard = make_guard([ipaddress.ip_network("64:ff9b:1::/96")])
    _probe(monkeypatch, "64:ff9b:1::808:808", guard)
    assert [a[0] for a in no_packets] == ["64:ff9b:1::808:808"]


def test_allowed_inner_network() -> None:
    # allow_networks naming the IPv4 network lets every form carrying it through,
    # but not a Teredo address whose other half is private.
    allow = [ipaddress.ip_network("10.0.0.0/8")]
    assert forbidden_reason("::ffff:10.1.2.3", allow) is None
    assert forbidden_reason("64:ff9b::a01:203", allow) is None
    assert forbidden_reason("2002:a01:203::1", allow) is None
    teredo = "2001:0:a9fe:a9fe::f5ff:fffe"  # server 169.254.169.254, client 10.0.0.1
    reason = forbidden_reason(teredo, allow)
    assert reason is not None and "169.254.169.254" in reason
