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
import sqlite3
from dataclasses import dataclass

from certhook.errors import ParseError

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


def _where(account: str | None, selector: Selector | None) -> tuple[str, list[object]]:
    clauses: list[str] = ["next_probe IS NOT NULL"]  # wildcards are never probed
    args: list[object] = []
    if account is not None:
        clauses.append("account = ?")
        args.append(account)
    if selector is not None:
        clauses.append("domain = ?")
        args.append(selector.domain)
        if selector.port is not None:
            clauses.append("port = ?")
            args.append(selector.port)
        if selector.protocol is not None:
            clauses.append("protocol = ?")
            args.append(selector.protocol)
    return " AND ".join(clauses), args


def mark_due(conn: sqlite3.Connection, account: str | None, selector: Selector | None,
             now: float) -> list[sqlite3.Row]:
    """Make the matching targets due at ``now``; returns them (id, account, domain, port,
    protocol). ``account`` None is every account, ``selector`` None every target."""
    where, args = _where(account, selector)
    conn.execute("BEGIN IMMEDIATE")  # one transaction, one fsync, for --all too
    try:
        rows = conn.execute(
            f"SELECT id, account, domain, port, protocol FROM targets WHERE {where}"  # noqa: S608
            " ORDER BY account, domain, port, protocol", args,
        ).fetchall()
        conn.executemany("UPDATE targets SET next_probe = ? WHERE id = ?",
                         [(now, row["id"]) for row in rows])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return rows


def done(conn: sqlite3.Connection, ids: list[int], since: float) -> list[int]:
    """Those of ``ids`` probed after ``since`` (the mark): a result is stored and
    the next probe is scheduled past the mark."""
    finished = []
    for target_id in ids:
        row = conn.execute("SELECT last_probe, next_probe FROM targets WHERE id = ?",
                           (target_id,)).fetchone()
        if row is None or (row["last_probe"] is not None and row["last_probe"] >= since
                           and (row["next_probe"] is None or row["next_probe"] > since)):
            finished.append(target_id)
    return finished
