"""Probe now: mark targets due, and read back the results of the probes that follow.

``certhook recheck`` and ``POST /api/v1/recheck`` share this. Marking is a
write of ``next_probe = now`` to the database: the auditor of the running
server (this process's or another's on the same database) looks for due
targets every :data:`~certhook.server.audit.POLL` seconds, and a probe in
flight when the mark is made does not erase it (``audit.py`` keeps a
``next_probe`` set during a probe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certhook.errors import ParseError
from certhook.server import store

__all__ = ["Selector", "done", "mark_due", "parse_selector"]

_HOSTPORT = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]/\s]+)):([0-9]{1,5})$")
# a host name (a wildcard is never probed, but may be named), or an IP address
_NAME = re.compile(r"^(?:\*\.)?[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?$"
                   r"|^[0-9A-Fa-f:.]+$")
_PROTOCOL = re.compile(r"^[a-z0-9-]{1,20}$")


@dataclass(frozen=True)
class Selector:
    """Which targets: one name, optionally one port and protocol."""

    domain: str
    port: int | None = None
    protocol: str | None = None

    def __str__(self) -> str:
        host = f"[{self.domain}]" if ":" in self.domain else self.domain
        text = self.domain if self.port is None else f"{host}:{self.port}"
        return text if self.protocol is None else f"{text}/{self.protocol}"


def parse_selector(text: str) -> Selector:
    """``host:port/protocol``, ``host:port``, ``[v6]:port`` or a bare name (all its ports)."""
    text = text.strip()
    head, slash, protocol = text.rpartition("/")
    if not slash:
        head, protocol = text, ""
    elif not _PROTOCOL.fullmatch(protocol):
        raise ParseError(f"{text[:100]!r}: bad protocol after '/'")
    match = _HOSTPORT.fullmatch(head)
    if match:
        domain, port = match.group(1) or match.group(2), int(match.group(3))
        if not 0 < port < 65536:
            raise ParseError(f"{text[:100]!r}: port must be 1 to 65535")
    elif slash:
        raise ParseError(f"{text[:100]!r}: a protocol needs a port (HOST:PORT/PROTOCOL)")
    else:
        domain, port = head, None
    domain = domain.lower().rstrip(".")
    if not _NAME.fullmatch(domain):
        raise ParseError(f"{text[:100]!r}: not a name, HOST:PORT or HOST:PORT/PROTOCOL")
    return Selector(domain, port, protocol or None)


def mark_due(db: store.Store, account: str | None, selector: Selector | None,
             now: float) -> list[store.Target]:
    """Make the matching targets due at ``now``; returns them. ``account`` None is every
    account, ``selector`` None every target (never a wildcard: it is not probed)."""
    if selector is None:
        return db.mark_due(account, None, None, None, now)
    return db.mark_due(account, selector.domain, selector.port, selector.protocol, now)


def done(db: store.Store, ids: list[int], since: float) -> list[int]:
    """Those of ``ids`` probed after ``since`` (the mark): a result is stored and
    the next probe is scheduled past the mark (or the target is gone)."""
    found = {t.id: t for t in db.targets_by_id(ids)}
    finished = []
    for target_id in ids:
        row = found.get(target_id)
        if row is None or (row.last_probe is not None and row.last_probe >= since
                           and (row.next_probe is None or row.next_probe > since)):
            finished.append(target_id)
    return finished
