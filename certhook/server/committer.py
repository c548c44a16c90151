"""Group commit: submissions are written by one writer, many per transaction.

Listeners hand a parsed request to a committer's ``submit`` and get their
response later, through a *sink*. The writer takes whatever has queued up
while the previous transaction was being fsynced, writes it all in one
transaction, commits, and only then answers each submission: ``ok`` is
never sent for a row that is not on disk, and the cost of the fsync is
shared by everyone who arrived in the meantime.

The writer is a thread of its own (:class:`GroupCommitter`), not the line
listeners' event loop: a slow fsync, a checkpoint, or the auditor holding
the write lock then delays acknowledgements but never stops the listeners
from reading, accepting or closing idle connections. (Writing on the event
loop measured at most 10 % faster in ``bench/server.py``: not worth that.)

A resubmission (same account, same client ``id``) is recognised by the
``UNIQUE (account, client_id)`` constraint and answered ``ok`` without being
stored or counted again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from certhook.errors import StoreUnavailable
from certhook.protocol import Request, Response
from certhook.server import metrics, store
from certhook.server.config import ServerConfig
from certhook.server.outage import Outage

__all__ = [
    "BatchWriter",
    "Committer",
    "GroupCommitter",
    "Job",
    "Sink",
    "WaitSink",
    "protocol_for_port",
]

log = logging.getLogger("certhook.server")

MAX_BATCH = 2000


def protocol_for_port(port: int) -> str:
    """The dialogue a port implies (25 is smtp, 993 is tls), from the probe's table."""
    from certhook.probe.starttls import protocol_for_port as implied

    return str(implied(port))


class Sink(Protocol):
    """Where the writer thread delivers finished jobs (once per batch)."""

    def deliver(self, jobs: list[Job]) -> None: ...


@dataclass
class Job:
    """One request on its way to the database, and its response once written."""

    request: Request
    transport: str
    peer: str
    sink: Sink
    token: Any = None
    response: Response | None = None
    account: str | None = None
    new: bool = field(default=False)


class Committer(Protocol):
    """What the listeners need of a committer."""

    @property
    def healthy(self) -> bool: ...

    def submit(self, job: Job) -> None: ...


class WaitSink:
    """A sink for one blocking caller (a WSGI thread): ``wait()`` for the job."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def deliver(self, jobs: list[Job]) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


class BatchWriter:
    """Writes batches of jobs, one transaction each; used by one thread at a time."""

    def __init__(self, db_path: str, first_probe_delay: float = 0.0,
                 on_commit: Callable[[], None] | None = None,
                 max_ports: int = ServerConfig.max_ports_per_submission,
                 max_targets: int = ServerConfig.max_targets_per_account,
                 clock: Callable[[], float] = time.time,
                 vantages: Callable[[str, str, int, str], tuple[str, ...]] | None = None,
                 ) -> None:
        self._store = store.open_store(db_path)  # LocalError now, not in a thread later
        # the vantages an account's targets are probed from (ServerConfig.vantages_for)
        self._vantages = vantages or (lambda account, domain, port, protocol: ())
        # current keys, and old ones until their overlap ends (by ``clock``)
        self._keys = store.KeyCache(self._store, clock)
        self._delay = first_probe_delay
        self._on_commit = on_commit
        self._max_ports = max_ports
        self._max_targets = max_targets
        self.committed = 0  # submissions stored (not counting resubmissions)
        self.transactions = 0  # commits, for the batch size of group commit
        self.healthy = True
        self.outage = Outage("writer", log)

    def close(self) -> None:
        log.info("writer: %d submissions stored in %d transactions",
                 self.committed, self.transactions)
        self._store.close()

    def write(self, batch: list[Job]) -> None:
        """Write ``batch`` in one transaction and set every job's response."""
        keys = self._keys
        now = time.time()
        try:
            keys.refresh()
            adds: list[tuple[Job, store.Submission]] = []
            budget = _TargetBudget(self._store, self._max_targets)
            for job in batch:
                job.account = keys.lookup(job.request.apikey)
                if job.account is None:
                    job.response = Response.error("auth", "unknown or revoked API key")
                elif job.request.verb == "ping":
                    job.response = Response(True, text="pong")  # encoded by the listener
                else:
                    job.response = (_check_protocols(job.request)
                                    or self._check_ports(job.request)
                                    or budget.take(job.account, _target_keys(job.request)))
                    if job.response is None:
                        adds.append((job, self._submission(job, now)))
            # one transaction, durable when it returns; last uses at most once a minute
            new = self._store.commit_batch(keys.take_uses(), [sub for _, sub in adds])
        except StoreUnavailable as exc:  # PostgreSQL gone: one line per outage, not per batch
            self.outage.failed(exc)
            self._unavailable(batch)
            return
        except Exception as exc:  # disk full, I/O error, locked too long...
            log.error("cannot store submissions: %s", exc)
            self._unavailable(batch)
            return
        self.outage.ok()
        stored = 0
        for (job, _), is_new in zip(adds, new):
            job.new = is_new
            stored += is_new
        _count(batch)
        self.healthy = True
        self.transactions += 1
        self.committed += stored
        if stored and self._on_commit is not None:
            self._on_commit()

    def _unavailable(self, batch: list[Job]) -> None:
        """Nothing of ``batch`` was committed: no ``ok`` for any of it."""
        self.healthy = False
        for job in batch:
            if job.response is None or job.response.ok:
                job.response = Response.error("unavailable", "cannot store the submission")
        _count(batch)

    def _check_ports(self, request: Request) -> Response | None:
        if len(request.ports) > self._max_ports:
            return Response.error("limit", f"more than {self._max_ports} ports in one"
                                  " submission (max_ports_per_submission)")
        return None

    def _submission(self, job: Job, now: float) -> store.Submission:
        req = job.request
        client_id = req.id or uuid.uuid4().hex
        job.response = Response.success(id=client_id, domains=str(len(req.domains)))
        assert job.account is not None
        return store.Submission(
            job.account, client_id, now, job.transport, job.peer, " ".join(req.domains),
            " ".join(map(str, req.ports)), " ".join(req.protocols), req.fingerprint,
            req.lineage, req.event, req.client, tuple(self._targets(job, now)))

    def _targets(self, job: Job, now: float) -> list[store.TargetUpsert]:
        req = job.request
        assert job.account is not None
        pairs = _port_protocols(req)
        rows = []
        for domain in req.domains:
            wildcard = domain.startswith("*.")
            for port, protocol in pairs:
                rows.append(store.TargetUpsert(
                    job.account, domain, port, protocol, now, req.lineage, req.event,
                    req.fingerprint, now if req.fingerprint else None,
                    None if wildcard else now + self._delay,
                    "a wildcard name: nothing to connect to" if wildcard else "",
                    req.acme_server, req.renew_before,
                    () if wildcard else self._vantages(job.account, domain, port, protocol),
                ))
        return rows

    @staticmethod
    def deliver(batch: list[Job]) -> None:
        """Hand the finished jobs to their sinks, one call per sink."""
        by_sink: dict[int, tuple[Sink, list[Job]]] = {}
        for job in batch:
            by_sink.setdefault(id(job.sink), (job.sink, []))[1].append(job)
        for sink, jobs in by_sink.values():
            try:
                sink.deliver(jobs)
            except Exception:  # a closed event loop must not stop the writer
                log.exception("cannot deliver responses")



def _count(batch: list[Job]) -> None:
    """The batch's answers in the metrics (``GET /metrics``): accepted, or refused why."""
    for job in batch:
        response = job.response
        if response is None or job.request.verb == "ping":
            continue
        if response.ok:
            metrics.SUBMISSIONS_ACCEPTED.inc()
        else:
            metrics.SUBMISSIONS_REFUSED.inc(response.code or "internal")


def _port_protocols(req: Request) -> list[tuple[int, str]]:
    """The (port, protocol) pairs a submission asks to audit: 443/tls if none."""
    ports = req.ports or (443,)
    return [(port, req.protocols[i] if i < len(req.protocols) else protocol_for_port(port))
            for i, port in enumerate(ports)]


def _target_keys(req: Request) -> set[store.TargetKey]:
    return {(domain, port, protocol) for domain in req.domains
            for port, protocol in _port_protocols(req)}


def _check_protocols(req: Request) -> Response | None:
    """``error syntax`` for a protocol name the probe has no dialogue for (issue 8.6)."""
    from certhook.probe.starttls import PROTOCOLS

    for name in req.protocols:
        if name not in PROTOCOLS:
            known = " ".join(sorted(PROTOCOLS))
            return Response.error("syntax", f"unknown protocol {name!r} (known: {known})")
    return None


class _TargetBudget:
    """Targets per account within ``max_targets``, across the jobs of one batch.

    A submission that only renews existing targets is always taken; one that
    would take its account past the limit is refused whole. The exact count
    (which of its targets exist) is looked up only near the limit.
    """

    def __init__(self, db: store.Store, limit: int) -> None:
        self._store, self._limit = db, limit
        self._stored: dict[str, int] = {}  # targets in the database, per account
        self._taken: dict[str, set[store.TargetKey]] = {}  # this batch's, maybe stored

    def take(self, account: str, keys: set[store.TargetKey]) -> Response | None:
        if account not in self._stored:
            self._stored[account] = self._store.count_targets(account)
        taken = self._taken.setdefault(account, set())
        wanted = taken | keys
        if self._stored[account] + len(wanted) > self._limit:
            new = wanted - self._store.existing_targets(account, wanted)
            if self._stored[account] + len(new) > self._limit:
                return Response.error(
                    "limit", f"account would have more than {self._limit} targets"
                    " (max_targets_per_account); remove some or ask for a higher limit")
        taken |= keys
        return None


class GroupCommitter:
    """The writer in its own thread: start(), submit() from any thread, stop()."""

    def __init__(
        self,
        db_path: str,
        first_probe_delay: float = 0.0,
        on_commit: Callable[[], None] | None = None,
        max_ports: int = ServerConfig.max_ports_per_submission,
        max_targets: int = ServerConfig.max_targets_per_account,
        vantages: Callable[[str, str, int, str], tuple[str, ...]] | None = None,
    ) -> None:
        self._args = (db_path, first_probe_delay, on_commit, max_ports, max_targets)
        self._vantages = vantages
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._writer: BatchWriter | None = None
        self._thread = threading.Thread(target=self._run, name="certhook-writer", daemon=True)

    @property
    def healthy(self) -> bool:
        return self._writer is None or self._writer.healthy

    @property
    def committed(self) -> int:
        return self._writer.committed if self._writer else 0

    @property
    def queued(self) -> int:
        """Submissions waiting for the writer (approximate, as ``qsize`` is)."""
        return self._queue.qsize()

    @property
    def transactions(self) -> int:
        return self._writer.transactions if self._writer else 0

    def start(self) -> None:
        """Open the database (LocalError if it cannot be) and start the writer thread."""
        self._writer = BatchWriter(*self._args, vantages=self._vantages)
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(30)

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        writer = self._writer
        assert writer is not None
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    stopping = True
                    break
                batch.append(job)
            writer.write(batch)
            writer.deliver(batch)
        writer.close()
