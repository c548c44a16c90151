"""The SSRF guard: which addresses the audit server may connect to.

Anyone with an API key chooses what the server connects to, so the server
must not become a way into its own network: it refuses loopback, private,
shared (CGNAT), link-local (cloud metadata at 169.254.169.254 among them),
multicast, reserved and unspecified addresses, the same inside IPv6
(IPv4-mapped, 6to4, NAT64) and the IPv6 metadata endpoints, unless the
configuration lists the network in ``allow_networks``.

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
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _parse(address: str) -> Address | None:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return None


def _embedded(ip: Address) -> Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip.sixtofour is not None:
            return ip.sixtofour
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _classify(ip: Address) -> str | None:
    for name, nets in _TABLE:
        if any(ip.version == net.version and ip in net for net in nets):
            return name
    if ip.is_multicast:
        return "multicast"
    if not ip.is_global:
        return "not a global address"
    return None


def forbidden_reason(address: str, allow: Iterable[Network] = ()) -> str | None:
    """Why the server must not connect to ``address``, or None if it may.

    Anything that is not an IP address is refused (the guard sees resolved
    addresses only). An address in one of the ``allow`` networks is allowed.
    """
    ip = _parse(address)
    if ip is None:
        return "not an IP address"
    allowed = tuple(allow)
    candidates = [ip]
    inner = _embedded(ip)
    if inner is not None:
        candidates.append(inner)
    for candidate in candidates:
        if any(candidate.version == net.version and candidate in net for net in allowed):
            return None
    for candidate in reversed(candidates):  # the embedded IPv4 address names it best
        reason = _classify(candidate)
        if reason is not None:
            if candidate is not ip:
                reason += f" (inside {ip})"
            return f"{candidate} is {reason}"
    return None


def make_guard(allow: Iterable[Network] = ()) -> Callable[[str], bool]:
    """The ``ProbeOptions.allow_address`` callable: True if ``address`` may be connected to."""
    allowed = tuple(allow)

    def allow_address(address: str) -> bool:
        return forbidden_reason(address, allowed) is None

    return allow_address
