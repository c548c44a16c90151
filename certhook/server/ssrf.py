"""The SSRF guard: which addresses the audit server may connect to.

Anyone with an API key chooses what the server connects to, so the server
must not become a way into its own network: it refuses loopback, private,
shared (CGNAT), link-local (cloud metadata at 169.254.169.254 among them),
multicast, reserved and unspecified addresses, and the IPv6 metadata
endpoints, unless the configuration lists the network in ``allow_networks``.
An IPv6 address that carries an IPv4 address (mapped, compatible, SIIT,
NAT64, 6to4, Teredo) is decided by the IPv4 address inside; the local-use
NAT64 prefix, whose layout only its operator knows, is refused.

The check runs on the address actually connected to (the probe calls the
guard with each resolved address right before ``connect``), not on the
name: a name that resolves to 127.0.0.1, or re-resolves to it later (DNS
rebinding), is caught all the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Callable, Union

__all__ = ["BLOCKED_NETWORKS", "forbidden_reason", "make_guard"]

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# name, networks. The "not global" test below catches what the standard
# library knows as non-global; this table names the usual suspects in the
# reason and covers what older Pythons classify differently.
BLOCKED_NETWORKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cloud metadata", ("fd00:ec2::254/128", "100.100.100.200/32")),
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("shared address space (CGNAT)", ("100.64.0.0/10",)),
    ("link-local (cloud metadata at 169.254.169.254)", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("reserved", ("240.0.0.0/4", "255.255.255.255/32", "192.0.0.0/24", "198.18.0.0/15",
                  "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32",
                  "100::/64", "fec0::/10")),
)
_TABLE = tuple(
    (name, tuple(ipaddress.ip_network(n) for n in nets)) for name, nets in BLOCKED_NETWORKS
)


def _last32(packed: bytes) -> tuple[ipaddress.IPv4Address, ...]:
    return (ipaddress.IPv4Address(packed[12:]),)


def _sixtofour(packed: bytes) -> tuple[ipaddress.IPv4Address, ...]:
    return (ipaddress.IPv4Address(packed[2:6]),)  # RFC 3056 2: bits 16-47


def _teredo(packed: bytes) -> tuple[ipaddress.IPv4Address, ...]:
    # RFC 4380 4: the Teredo server in bits 32-63; the client's public
    # address in the last 32 bits, every bit inverted.
    client = int.from_bytes(packed[12:], "big") ^ 0xFFFFFFFF
    return ipaddress.IPv4Address(packed[4:8]), ipaddress.IPv4Address(client)


# Every IPv6 form that carries an IPv4 address: such an address is decided
# by the IPv4 address(es) inside it, since that is where the packets end up
# (a translator, a relay, or the host's own IPv4 stack for mapped ones).
_EMBEDDING: tuple[tuple[str, str, Callable[[bytes], tuple[ipaddress.IPv4Address, ...]]], ...] = (
    ("IPv4-mapped", "::ffff:0:0/96", _last32),  # RFC 4291 2.5.5.2
    ("IPv4-compatible", "::/96", _last32),  # RFC 4291 2.5.5.1, deprecated
    ("SIIT", "::ffff:0:0:0/96", _last32),  # RFC 2765 2.1
    ("NAT64", "64:ff9b::/96", _last32),  # RFC 6052 2.1, only a /96
    ("6to4", "2002::/16", _sixtofour),
    ("Teredo", "2001::/32", _teredo),
)
_FORMS = tuple((name, ipaddress.ip_network(net), get) for name, net, get in _EMBEDDING)
# RFC 8215: the local-use NAT64 prefix, a /48 out of which an operator picks
# a prefix of 48, 56, 64 or 96 bits, each with the IPv4 address at another
# place (RFC 6052 2.2). Which one is known only to the operator, and the
# zero padding of one layout reads as 0.0.0.0 or as arbitrary bits in
# another, so the address cannot be decided from the outside. The translator
# is by definition local: refused as a whole, unless ``allow_networks`` lists it.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def _parse(address: str) -> Address | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None


def _embedded(ip: Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The form and the IPv4 address(es) an IPv6 address carries, if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        for name, net, get in _FORMS:
            if ip in net:
                return name, get(ip.packed)
    return None


def _named(ip: Address) -> str | None:
    for name, nets in _TABLE:
        if any(ip.version == net.version and ip in net for net in nets):
            return name
    return None


def _classify(ip: Address) -> str | None:
    name = _named(ip)
    if name is not None:
        return name
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:  # IPv6: unassigned space such as the rest of ::/8
        return "reserved"
    if not ip.is_global:
        return "not a global address"
    return None


def _inside(ip: Address, allowed: tuple[Network, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in allowed)


def forbidden_reason(address: str, allow: Iterable[Network] = ()) -> str | None:
    """Why the server must not connect to ``address``, or None if it may.

    Anything that is not an IP address is refused (the guard sees resolved
    addresses only). An address in one of the ``allow`` networks is allowed;
    an IPv6 address carrying IPv4 addresses is allowed when each of them is.
    """
    ip = _parse(address)
    if ip is None:
        return "not an IP address"
    allowed = tuple(allow)
    if _inside(ip, allowed):
        return None
    named = _named(ip)  # ::1 is loopback, not the IPv4-compatible 0.0.0.1
    if named is not None:
        return f"{ip} is {named}"
    if ip in _LOCAL_NAT64:
        return f"{ip} is local-use NAT64 (RFC 8215), whose IPv4 address cannot be read"
    embedded = _embedded(ip)
    if embedded is None:
        reason = _classify(ip)
        return None if reason is None else f"{ip} is {reason}"
    form, inner = embedded
    for candidate in inner:
        if _inside(candidate, allowed):
            continue
        reason = _classify(candidate)
        if reason is not None:
            return f"{candidate} is {reason} ({form}, inside {ip})"
    return None


def make_guard(allow: Iterable[Network] = ()) -> Callable[[str], bool]:
    """The ``ProbeOptions.allow_address`` callable: True if ``address`` may be connected to."""
    allowed = tuple(allow)

    def allow_address(address: str) -> bool:
        return forbidden_reason(address, allowed) is None

    return allow_address
