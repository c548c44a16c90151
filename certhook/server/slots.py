"""Connection slots of the line listeners: who gets one, and who gives one up.

One address cannot lock others out (issue 9.3): it may hold at most
``max_per_address`` connections (an IPv6 /64 is one address, what one site
is given), and when all ``max_connections`` are taken a newcomer from an
address holding fewer takes the slot of an idle connection of the address
holding the most. TLS handshakes count from the TCP accept on, and at most
``max_handshakes`` of them hold OpenSSL's state at once (issue 9.5).
"""

from __future__ import annotations

import ipaddress
from typing import Generic, Protocol, TypeVar

from certhook.protocol import Response

__all__ = ["MAX_HANDSHAKES", "ConnectionSlots", "address_key"]

MAX_HANDSHAKES = 256  # TLS handshakes under way at once (~46 KiB of OpenSSL state each)
FULL = Response.error("limit", "too many connections").encode()
FULL_ADDRESS = Response.error("limit", "too many connections from your address").encode()


class Slotted(Protocol):
    """What a connection shows the slots."""

    address: str  # address_key() of its peer
    last_activity: float

    @property
    def idle(self) -> bool: ...  # nothing asked and unanswered

    def evict(self) -> None: ...  # closed to make room, with a word why

    def close(self) -> None: ...


C = TypeVar("C", bound=Slotted)


class ConnectionSlots(Generic[C]):
    """The connections held, by address, and the limits on them."""

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.max_handshakes = MAX_HANDSHAKES
        self.connections: set[C] = set()
        self.by_address: dict[str, set[C]] = {}
        self.handshaking: dict[C, None] = {}  # TLS state allocated, oldest first
        self.refused = 0
        self.evicted = 0

    def admit(self, conn: C) -> bytes | None:
        """Take ``conn`` in, or the line that refuses it."""
        mine = self.by_address.get(conn.address)
        if mine is not None and len(mine) >= self.max_per_address:
            self.refused += 1
            return FULL_ADDRESS
        if len(self.connections) >= self.max_connections and not self._evict_for(conn.address):
            self.refused += 1
            return FULL
        self.connections.add(conn)
        self.by_address.setdefault(conn.address, set()).add(conn)
        return None

    def _evict_for(self, address: str) -> bool:
        """Close the longest-idle connection of the address holding the most, if
        it holds more than ``address`` would; True if a slot was freed."""
        wanted = len(self.by_address.get(address, ())) + 1
        biggest = max(self.by_address.values(), key=len, default=set())
        if len(biggest) <= wanted:
            return False
        idle = [c for c in biggest if c.idle]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c.last_activity)
        self.forget(victim)
        victim.evict()
        self.evicted += 1
        return True

    def handshake_begun(self, conn: C) -> None:
        """Past ``max_handshakes`` under way, the oldest is dropped: a handshake
        takes a few round trips, and each holds ~46 KiB of OpenSSL state."""
        while len(self.handshaking) >= self.max_handshakes:
            oldest = next(iter(self.handshaking))
            self.forget(oldest)
            oldest.close()
            self.evicted += 1
        self.handshaking[conn] = None

    def handshake_done(self, conn: C) -> None:
        self.handshaking.pop(conn, None)

    def forget(self, conn: C) -> None:
        self.handshaking.pop(conn, None)
        if conn in self.connections:
            self.connections.discard(conn)
            mine = self.by_address[conn.address]
            mine.discard(conn)
            if not mine:
                del self.by_address[conn.address]


def address_key(host: str) -> str:
    """Whose connection this is, for the per-address limit: an IPv4 address
    (IPv4-mapped IPv6 too) or an IPv6 /64, what one host or site is given."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)
