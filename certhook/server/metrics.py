"""``GET /metrics``: the audit server in Prometheus text exposition format 0.0.4.

Two parts (``docs/server.md``, "Prometheus"):

* **Per target**, from the database, one series per target and family, with
  the labels ``account``, ``domain``, ``port`` and ``protocol``. Names follow
  blackbox_exporter's where they mean the same (``probe_success``,
  ``probe_ssl_earliest_cert_expiry``); the rest are ``certhook_*``.
  ``certhook_target_state`` is one series per state with the value 1 for the
  target's state and 0 for the others (as kube-state-metrics does for a
  pod's phase), so that a rule reads ``certhook_target_state{state="critical"}
  == 1``. The text format wants a family's samples in one group: the targets
  are read once, a page of :data:`PAGE` at a time by the ``(account, domain,
  port, protocol)`` index, each family's lines going to a spooled file of its
  own (in memory up to a share of :data:`SPOOL_MEMORY`, then on disk), joined
  at the end: a scrape of 100,000 targets holds one page in memory, never
  the whole list or any history (measured: 1.5 s, 119 MB, 38 MiB RSS).
* **The server's own health**: counters kept in this process by the
  committer (submissions accepted or refused, by reason) and the auditor
  (probes by outcome, a duration histogram, probes in flight), and gauges
  read at scrape time (the submission queue, the targets due for a probe,
  notifications waiting and given up, key checks throttled).

Counters are plain integers under one lock per metric: an increment costs a
lock and an addition, nothing is allocated after the first sample of a label
set. Standard library only.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any, Callable, Optional

from certhook.probe.prometheus import escape_label
from certhook.server import queries, store

__all__ = [
    "CONTENT_TYPE",
    "NODE",
    "PAGE",
    "PROBES",
    "PROBES_IN_FLIGHT",
    "PROBE_DURATION",
    "RESULTS_DROPPED",
    "STATES",
    "SUBMISSIONS_ACCEPTED",
    "SUBMISSIONS_REFUSED",
    "Counter",
    "Gauge",
    "Histogram",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PAGE = 1000  # targets read from the database at a time
SPOOL_MEMORY = 4 << 20  # bytes of exposition kept in memory before it spills to disk
MAX_LABEL = 256  # characters of a label value; longer ones are cut (a domain is <= 253)
#: The states a target can be in (``evaluate.py``), one series each.
STATES = ("ok", "warning", "critical", "unknown", "waiting")
#: Seconds: the probe duration histogram's upper bounds (a probe_timeout is 10 s).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_RENEWAL_OVERDUE = "renewal overdue"  # the finding's wording, certhook/probe/lifetime.py


def _label(value: object) -> str:
    return escape_label(str(value)[:MAX_LABEL])


def _labels(names: Sequence[str], values: Sequence[object]) -> str:
    if not names:
        return ""
    return "{" + ",".join(f'{n}="{_label(v)}"' for n, v in zip(names, values)) + "}"


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A counter with a fixed tuple of label names; thread-safe."""

    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = (),
                 seed: Sequence[tuple[str, ...]] = ()) -> None:
        self.name, self.help, self.labels = name, help_text, tuple(labels)
        # the label sets shown (at 0) before they happen, so that rate() sees the start
        self._values: dict[tuple[str, ...], float] = {k: 0.0 for k in (seed if labels else [()])}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        if len(labels) != len(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}")
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labels, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    """A gauge: a counter that may also go down."""

    kind = "gauge"

    def dec(self, *labels: str) -> None:
        self.inc(*labels, amount=-1.0)


class Histogram:
    """A histogram without labels; thread-safe, one lock and a bisection per sample."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str,
                 buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self.name, self.help = name, help_text
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)  # the last one: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        import bisect

        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def lines(self) -> list[str]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        out, running = [], 0
        for bound, count in zip((*self.buckets, math.inf), counts):
            running += count
            out.append(f'{self.name}_bucket{{le="{_number(bound)}"}} {running}')
        out += [f"{self.name}_sum {_number(total)}", f"{self.name}_count {running}"]
        return out


class Info:
    """One series of value 1 whose labels say something about this process."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, label: str) -> None:
        self.name, self.help, self.label = name, help_text, label
        self.value = ""

    def set(self, value: str) -> None:
        self.value = value

    def lines(self) -> list[str]:
        return [f"{self.name}{_labels((self.label,), (self.value,))} 1"]


# -- what this process counts --------------------------------------------------------

SUBMISSIONS_ACCEPTED = Counter(
    "certhook_submissions_accepted_total",
    "Submissions committed (a resubmission of the same id counts again).")
SUBMISSIONS_REFUSED = Counter(
    "certhook_submissions_refused_total",
    "Submissions refused by the writer, by reason (auth, limit, syntax, unavailable).",
    ("reason",), [(r,) for r in ("auth", "limit", "syntax", "unavailable")])
PROBES = Counter("certhook_probes_total", "Probes run by the auditor, by outcome"
                 " (ok, warning, critical, unknown).", ("outcome",),
                 [(s,) for s in ("ok", "warning", "critical", "unknown")])
PROBE_DURATION = Histogram("certhook_probe_duration_seconds",
                           "How long each probe held its thread, in seconds.")
PROBES_IN_FLIGHT = Gauge("certhook_probes_in_flight", "Probes running now.")
RESULTS_DROPPED = Counter(
    "certhook_probe_results_dropped_total",
    "Probe results not recorded: the lease had passed to another node (or the target was"
    " removed during the probe).")
NODE = Info("certhook_node_info", "This process's node name among the nodes on one"
            " database (always 1).", "node")
_PROCESS: tuple[Any, ...] = (SUBMISSIONS_ACCEPTED, SUBMISSIONS_REFUSED, PROBES, PROBE_DURATION,
                             PROBES_IN_FLIGHT, RESULTS_DROPPED, NODE)


# -- the per-target families ----------------------------------------------------------

_TargetValue = Callable[[store.Target], Optional[float]]


def _probed(row: store.Target) -> bool:
    return row.last_probe is not None


def _overdue(row: store.Target) -> float | None:
    if row.not_after is None:  # no certificate read at the last probe: not known
        return None
    reasons = (row.reasons or "").split("\n")
    return float(any(r.startswith(_RENEWAL_OVERDUE) for r in reasons))


def _optional(column: str) -> _TargetValue:
    def value(row: store.Target) -> float | None:
        found = getattr(row, column)
        return None if found is None else float(found)
    return value


# name, type, help, value of a target row (None: no sample)
TARGET_FAMILIES: tuple[tuple[str, str, str, _TargetValue], ...] = (
    ("probe_success", "gauge", "Whether the last probe reached the endpoint and read its"
     " certificate (1) or not (0).",
     lambda r: float(r.status not in (None, "unknown")) if _probed(r) else None),
    ("probe_ssl_earliest_cert_expiry", "gauge", "notAfter of the leaf certificate served at"
     " the last probe, as a Unix timestamp.", _optional("not_after")),
    ("certhook_deployed", "gauge", "Whether the endpoint serves the certificate the client"
     " last reported as deployed (1) or not (0); absent with no report.", _optional("deployed")),
    ("certhook_renewal_overdue", "gauge", "Whether the served certificate is past its renewal"
     " point by more than the slack (1) or not (0).", _overdue),
    ("certhook_last_probe_timestamp_seconds", "gauge", "When the target was last probed, as a"
     " Unix timestamp.", _optional("last_probe")),
    ("certhook_target_failures", "gauge", "Failed probes of the target in a row.",
     _optional("failures")),
)
_TARGET_LABELS = ("account", "domain", "port", "protocol")


def _pages(db: store.Store, accounts: Sequence[str]) -> Iterator[list[store.Target]]:
    for account in accounts:
        after: queries.Cursor | None = None
        while True:
            rows, after = queries.target_page(db, account, PAGE, after)
            if rows:
                yield rows
            if after is None:
                break


def _target_labels(row: store.Target) -> str:
    return _labels(_TARGET_LABELS, [getattr(row, n) for n in _TARGET_LABELS])


def _write(out: IO[bytes], lines: Sequence[str]) -> None:
    if lines:
        out.write(("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _write_targets(out: IO[bytes], db: store.Store, accounts: Sequence[str]) -> None:
    """Every per-target family, each in one group: the targets are read once, a page at a
    time, each family's lines going to a spooled part of its own, then joined."""
    state = "certhook_target_state"
    headers = [_header(name, kind, help_text) for name, kind, help_text, _ in TARGET_FAMILIES]
    headers.append(_header(state, "gauge", "The target's state: 1 for the state it is in, 0"
                           " for the others (" + ", ".join(STATES) + ")."))
    parts: list[IO[bytes]] = []
    try:
        for _ in headers:
            parts.append(tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY // len(headers)))
        for rows in _pages(db, accounts):
            lines: list[list[str]] = [[] for _ in headers]
            for row in rows:
                labels = _target_labels(row)
                for family, (name, _, _, value_of) in zip(lines, TARGET_FAMILIES):
                    value = value_of(row)
                    if value is not None:
                        family.append(f"{name}{labels} {_number(value)}")
                base, now = labels[:-1], row.state
                lines[-1] += [f'{state}{base},state="{s}"}} {int(now == s)}' for s in STATES]
            for part, family in zip(parts, lines):
                _write(part, family)
        for header, part in zip(headers, parts):
            _write(out, header)
            part.seek(0)
            shutil.copyfileobj(part, out, 1 << 16)
    finally:
        for part in parts:
            part.close()


def _write_health(out: IO[bytes], db: store.Store, queued: int | None,
                  throttled: int | None, now: float) -> None:
    for metric in _PROCESS:
        _write(out, [*_header(metric.name, metric.kind, metric.help), *metric.lines()])
    pending, failed = db.notification_counts()
    gauges: list[tuple[str, str, str, float | None]] = [
        ("certhook_submission_queue_depth", "gauge", "Submissions waiting for the writer.",
         None if queued is None else float(queued)),
        ("certhook_probes_due", "gauge", "Targets whose probe is due and not yet made.",
         float(db.count_due(now))),
        ("certhook_notifications_pending", "gauge", "Notifications waiting to be sent"
         " (or retried).", float(pending)),
        ("certhook_notifications_failed_total", "counter", "Notifications given up after"
         " every retry, as the database holds them.", float(failed)),
        ("certhook_key_checks_throttled_total", "counter", "Key checks refused by the"
         " failed-login throttle (docs/server.md: Failed key checks).",
         None if throttled is None else float(throttled)),
    ]
    for name, kind, help_text, value in gauges:
        if value is not None:
            _write(out, [*_header(name, kind, help_text), f"{name} {_number(value)}"])


def render(db: store.Store, account: str | None, *, queued: int | None = None,
           throttled: int | None = None, now: float | None = None) -> IO[bytes]:
    """The exposition for ``account`` (every account for None), as a file at offset 0.

    The caller closes it. Read in one transaction, so the families agree.
    """
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
    try:
        with db.snapshot():
            accounts = db.target_accounts() if account is None else [account]
            _write_targets(out, db, accounts)
            _write_health(out, db, queued, throttled, time.time() if now is None else now)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out
