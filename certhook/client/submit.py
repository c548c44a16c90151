"""Deliver submissions: the spool first, then the new ones, to the first server that says ok.

:func:`build_requests` turns what changed into protocol requests (split so
that each fits a 1,000-byte line); :func:`deliver` sends them and settles
each one: deleted from the spool after ``ok``; kept in ``rejected/`` after
``error syntax`` (retrying would not help, losing it would hide the fault);
spooled, with the same ``id``, after anything else. The result is an
:class:`Outcome`, which says in one line what went wrong, if anything.
"""

from __future__ import annotations

import os

from certhook import __version__
from certhook.client.spool import Entry, Spool
from certhook.errors import LocalError, ParseError, RemoteError
from certhook.protocol import Request, parse_request

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from certhook.client.changes import Change
    from certhook.client.config import ClientConfig
    from certhook.client.transport import Deadline

__all__ = [
    "CLIENT",
    "Outcome",
    "Submission",
    "build_requests",
    "content_key",
    "deliver",
    "drop_delivered",
    "new_id",
    "submissions_for",
    "warn",
]

CLIENT = f"certhook/{__version__}"


def new_id() -> str:
    """A submission id: 16 random hex digits, made once, kept across retries."""
    return os.urandom(8).hex()


class Submission:
    """A request (without key) and the journal key that marks it delivered, if any.

    ``context`` tells apart two submissions of the same content that are both
    meant to be sent (the failures of two certbot runs: ``failed LINEAGE
    START``); the journal key is the content key plus it.
    """

    __slots__ = ("entry", "error", "journal_key", "rejected", "request", "server", "state")

    def __init__(self, request: Request, context: str | None = None,
                 entry: Entry | None = None) -> None:
        self.request = request
        self.journal_key = _journal_key(request, context)
        self.entry = entry  # set when it came from the spool
        self.state = "pending"  # -> "delivered" | "rejected"
        self.error: str | None = None
        self.rejected: str | None = None  # where a rejected one was kept
        self.server: str | None = None  # the server that took it

    def __repr__(self) -> str:
        return f"Submission({self.request.lineage!r}, {self.request.event!r}, {self.state})"


def content_key(request: Request) -> str:
    """What a submission says, as one word: two requests with the same key tell
    the server the same thing, whatever their ids and clients.

    Every field the server acts on (domains, ports with their protocols,
    fingerprint, lineage, event) goes in, order-free; leaving any out would let
    a poorer submission (a port-less one of the bash fallback) stand in for a
    richer one (issue 8.1). SHA-256, so that a journal line stays short.
    """
    from certhook.client.changes import _sha256_hex

    ports = sorted(zip(request.ports, (*request.protocols,
                                       *("",) * (len(request.ports) - len(request.protocols)))))
    text = "\n".join([
        request.verb, request.event or "", request.lineage or "", request.fingerprint or "",
        " ".join(sorted(request.domains)), " ".join(f"{port}/{proto}" for port, proto in ports),
    ])
    return _sha256_hex(text.encode("utf-8", "surrogateescape"))[:32]


def _journal_key(request: Request, context: str | None) -> str | None:
    """``EVENT LINEAGE CONTENT [CONTEXT]`` for what is sent once (a renewal, a
    failed run), None for what is always sent (a sync, a bare add)."""
    if context is None and not (
            request.event == "deployed" and request.lineage and request.fingerprint):
        return None
    key = f"{request.event} {request.lineage or '-'} {content_key(request)}"
    return f"{key} {context}" if context else key


def _copy(request: Request, apikey: str | None) -> Request:
    return request.replace(apikey=apikey)


def build_requests(
    domains: Sequence[str],
    *,
    event: str,
    lineage: str | None = None,
    fingerprint: str | None = None,
    ports: Sequence[tuple[int, str]] = (),
    key_length: int = 64,
    acme_server: str | None = None,
    renew_before: int | None = None,
) -> list[Request]:
    """The requests that carry these domains, each fitting one protocol line.

    Each request gets its own id. Values are checked and normalised as the
    server will (``parse_request``): a bad one raises :class:`ParseError`
    here rather than ``error syntax`` there. ``ports`` of just 443/tls are
    left out (no port means 443).
    """
    if list(ports) == [(443, "tls")]:
        ports = ()
    placeholder = "k" * max(key_length, 1)  # the line is measured with a key of this size

    def make(chunk: list[str]) -> Request:
        return Request(
            domains=tuple(chunk), apikey=placeholder,
            ports=tuple(port for port, _ in ports), protocols=tuple(p for _, p in ports),
            fingerprint=fingerprint, lineage=lineage, event=event, id=new_id(), client=CLIENT,
            acme_server=acme_server, renew_before=renew_before,
        )

    def fits(chunk: list[str]) -> bool:
        try:
            make(chunk).encode()
        except ValueError:
            return False
        return True

    chunks: list[list[str]] = []
    current: list[str] = []
    for domain in domains:
        if current and not fits([*current, domain]):
            chunks.append(current)
            current = []
        current.append(domain)
    if current or not chunks:
        chunks.append(current)
    requests = []
    for chunk in chunks:
        source = f"lineage {lineage}" if lineage else "submission"
        try:
            checked = parse_request(make(chunk).encode(), source)
        except ParseError:
            raise
        except ValueError as exc:  # from encode(): a value with spaces, or too long
            raise ParseError(str(exc), source) from None
        requests.append(_copy(checked, None))
    return requests


class Outcome:
    """What happened to a batch of submissions."""

    def __init__(self, spool_dir: str) -> None:
        self.spool_dir = spool_dir
        self.submissions: list[Submission] = []
        self.errors: list[str] = []  # why servers did not take them, in order, deduplicated
        self.warnings: list[str] = []  # local trouble: unreadable spool files, cannot spool
        self.lost: list[Submission] = []  # could not even be spooled
        self.busy = False  # another process held the spool lock

    def _error(self, text: str) -> None:
        if text not in self.errors:
            self.errors.append(text)

    @property
    def delivered(self) -> list[Submission]:
        return [s for s in self.submissions if s.state == "delivered"]

    @property
    def rejected(self) -> list[Submission]:
        return [s for s in self.submissions if s.state == "rejected"]

    @property
    def waiting(self) -> list[Submission]:
        return [s for s in self.submissions if s.state == "pending" and s not in self.lost]

    @property
    def ok(self) -> bool:
        return not (self.waiting or self.lost or self.rejected or self.warnings)

    def warning(self) -> str | None:
        """Everything that went wrong, as one line (None if nothing did)."""
        parts: list[str] = []
        if self.waiting:
            why = "; ".join(self.errors[-3:]) or "not sent"
            parts.append(f"{_count(len(self.waiting))} not delivered ({why});"
                         f" spooled in {self.spool_dir}, 'certhook flush' retries")
        if self.lost:
            why = "; ".join(s.error or "" for s in self.lost[:1])
            parts.append(f"{_count(len(self.lost))} LOST: not delivered and not spooled ({why})")
        for sub in self.rejected:
            parts.append(f"the server refused submission {sub.request.id}"
                         f" ({sub.request.lineage or ' '.join(sub.request.domains[:3])})"
                         f" as malformed ({sub.error}); kept in {sub.rejected}")
        parts.extend(self.warnings)
        return "; ".join(parts) if parts else None


def _count(n: int) -> str:
    return f"{n} submission" + ("" if n == 1 else "s")


def drop_delivered(spool: Spool, submissions: Iterable[Submission]) -> list[Submission]:
    """Leave out submissions already delivered or waiting in the spool.

    A deploy hook and a post hook (or ``certhook run``, or the drop-in's
    bash fallback) may all see the same renewal; the journal key makes the
    second identical submission a no-op. Identical means the whole content
    (:func:`content_key`): a spooled line without ports never stands in for
    one with them.
    """
    subs = list(submissions)
    if not any(s.journal_key for s in subs):
        return subs
    seen = spool.delivered()
    try:
        entries = spool.pending(quarantine=False)[0] if spool.has_pending() else []
    except LocalError:
        entries = []  # deliver() says what is wrong with the spool
    waiting = {content_key(e.request) for e in entries}
    return [s for s in subs if s.journal_key is None or not (
        s.journal_key in seen or content_key(s.request) in waiting)]


def _send(config: ClientConfig, subs: list[Submission], deadline: Deadline,
          outcome: Outcome) -> None:
    from certhook.client.transport import open_session

    pending = [s for s in subs if s.state == "pending"]
    if not pending:
        return
    if not config.servers:
        outcome._error(config.unset("server"))
        return
    if not config.api_key:
        outcome._error(config.unset("api_key"))
        return
    for server in config.servers:
        if not pending:
            return
        if deadline.remaining() <= 0:
            outcome._error("the deadline passed")
            return
        try:
            session = open_session(server, config, deadline)
        except RemoteError as exc:
            outcome._error(config.redact(str(exc)))
            continue
        still: list[Submission] = []
        with session:
            for index, sub in enumerate(pending):
                try:
                    response = session.submit(_copy(sub.request, config.api_key))
                except RemoteError as exc:
                    sub.error = config.redact(str(exc))
                    outcome._error(sub.error)
                    still.extend(pending[index:])
                    break
                except ValueError:  # cannot be encoded (a key grown since it was spooled)
                    sub.state, sub.error = "rejected", "too long for one line"
                    continue
                text = config.redact(f"{response.code} {response.text}".strip())
                if response.ok:
                    sub.state, sub.server = "delivered", str(server)
                elif response.code == "syntax":
                    sub.state, sub.error = "rejected", f"{server}: error {text}"
                else:
                    sub.error = f"{server}: error {text}"
                    outcome._error(sub.error)
                    still.append(sub)
        pending = still


def _settle(spool: Spool, sub: Submission, outcome: Outcome) -> None:
    try:
        if sub.state == "delivered":
            if sub.entry is not None:
                spool.remove(sub.entry)
        elif sub.state == "rejected":
            sub.rejected = spool.reject(sub.request, sub.error or "rejected", sub.entry)
        elif sub.entry is not None:
            spool.update(sub.entry, sub.error or (outcome.errors[-1] if outcome.errors else None))
        else:
            sub.entry = spool.add(sub.request, sub.error or (
                outcome.errors[-1] if outcome.errors else None))
    except LocalError as exc:
        if sub.state == "delivered":
            outcome.warnings.append(str(exc))  # delivered; a duplicate later, at worst
        elif sub.entry is None:
            sub.error = str(exc)
            outcome.lost.append(sub)
        else:
            outcome.warnings.append(str(exc))


def deliver(
    config: ClientConfig,
    submissions: Iterable[Submission],
    deadline: Deadline,
    *,
    flush: bool = True,
    lock_wait: float = 0.0,
) -> Outcome:
    """Send the spool (with ``flush``) and then ``submissions``; settle each.

    The spool is sent only if its lock can be had within ``lock_wait``
    seconds: a busy lock means another certhook is sending it right now.
    New submissions need no lock: they are in no file yet.
    """
    spool = Spool(config.spool_dir)
    outcome = Outcome(config.spool_dir)
    try:
        if flush and spool.has_pending():
            if spool.lock(lock_wait):
                entries, warnings = spool.pending()
                outcome.warnings.extend(warnings)
                outcome.submissions.extend(Submission(e.request, None, e) for e in entries)
            else:
                outcome.busy = True
    except LocalError as exc:
        outcome.warnings.append(str(exc))
    outcome.submissions.extend(submissions)
    try:
        _send(config, outcome.submissions, deadline, outcome)
    finally:
        try:
            for sub in outcome.submissions:
                _settle(spool, sub, outcome)
            spool.remember([s.journal_key for s in outcome.delivered if s.journal_key])
        finally:
            spool.unlock()
    return outcome


def _ports(config: ClientConfig, lineage: str | None, problems: list[str]) -> list[tuple[int, str]]:
    """The ``[ports]`` mapping of certhook's conf for a lineage (none: 443)."""
    if lineage is None or lineage.lower() not in config.sections.get("ports", {}):
        return []  # the parser is imported only when there is something to map
    from certhook.client.ports import ports_for_lineage

    try:
        return ports_for_lineage(config.sections, lineage)
    except ParseError as exc:
        problems.append(f"{config.path}: {exc}; reporting {lineage} without ports")
        return []


def _acme_server(url: str | None) -> str | None:
    """The lineage's ACME directory, if the protocol can carry it (else left out:
    the report matters more than the ARI hint)."""
    from certhook.protocol import _is_acme_server

    return url if url is not None and _is_acme_server(url) else None


def submissions_for(changes: Iterable[Change], config: ClientConfig
                    ) -> tuple[list[Submission], list[str]]:
    """The submissions that report ``changes``, and problems met making them."""
    subs: list[Submission] = []
    problems: list[str] = []
    for change in changes:
        ports = _ports(config, change.lineage, problems)
        try:
            requests = build_requests(
                change.domains, event=change.event, lineage=change.lineage,
                fingerprint=change.fingerprint, ports=ports,
                key_length=len(config.api_key) if config.api_key else 64,
                acme_server=_acme_server(change.acme_server),
                renew_before=change.renew_before,
            )
        except ParseError as exc:
            problems.append(f"cannot report {change.lineage or ' '.join(change.domains[:3])}:"
                            f" {exc}")
            continue
        subs.extend(Submission(request, change.journal_key) for request in requests)
    return subs, problems


def warn(command: str, parts: Iterable[str | None], config: ClientConfig | None) -> bool:
    """Print ``parts`` as ONE warning line on stderr; False if there was nothing to say."""
    import sys

    text = "; ".join(part for part in parts if part)
    if not text:
        return False
    if config is not None:
        text = config.redact(text)
    from certhook.escape import for_terminal

    # one line, and no terminal control, whatever a peer put in its error text
    text = for_terminal(" ".join(text.split()))
    sys.stderr.write(f"certhook {command}: warning: {text}\n")
    sys.stderr.flush()
    return True
