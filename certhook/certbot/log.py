"""Read certbot's debug log, ``letsencrypt.log``, and its rotated copies.

certbot rotates the log at every start: ``letsencrypt.log`` is the latest
run, ``letsencrypt.log.1`` the one before, up to ``.1000`` by default. A
record is ``2026-11-21 07:21:54,825:LEVEL:logger:message`` in local time
without a zone; lines without that prefix continue the previous record.
This module splits files into records and runs; :mod:`._logrun` reads what
the records say, wording by wording and certbot version by version.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Iterable
from datetime import datetime

from certhook.certbot._logrun import LogEvent, Run, RunBuilder
from certhook.errors import LocalError

__all__ = [
    "LogEvent", "LogParser", "Run", "last_events", "last_events_for", "parse_log", "read_logs",
]

_LOG_FILE = re.compile(r"letsencrypt\.log(?:\.([0-9]{1,9}))?")  # not "letsencrypt.log.2.gz"
# asctime:levelname:name:message, certbot's file format since 0.1
_RECORD = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d),(\d{3}):([A-Z]+):([^:]*):(.*)")


class LogParser:
    """Incremental parser: :meth:`feed` text in any pieces, then :meth:`close`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._buffer = ""
        self._runs: list[Run] = []
        self._run: RunBuilder | None = None
        self._record: tuple[datetime, str, list[str]] | None = None
        self._last: datetime | None = None

    def feed(self, text: str) -> None:
        """Add text; whole lines are parsed now, a partial one is kept."""
        self._buffer += text
        if "\n" not in text:
            return
        *complete, self._buffer = self._buffer.split("\n")
        for line in complete:
            self._line(line.rstrip("\r"))

    def close(self) -> list[Run]:
        """Parse what is left and return every run, in log order."""
        if self._buffer:
            self._line(self._buffer.rstrip("\r"))
            self._buffer = ""
        self._flush()
        if self._run is not None and self._last is not None:
            self._runs.append(self._run.finish(self._last))
            self._run = None
        return self._runs

    def _line(self, line: str) -> None:
        match = _RECORD.fullmatch(line)
        time = None
        if match:
            try:
                year, month, day, hour, minute, second, millis = map(int, match.groups()[:7])
                time = datetime(year, month, day, hour, minute, second, millis * 1000)
            except ValueError:
                time = None  # "2026-13-45 ...": not a timestamp, so a continuation
        if time is None or match is None:
            if self._record is not None:
                self._record[2].append(line)
            return
        self._flush()
        self._record = (time, match.group(8), [match.group(10)])

    def _flush(self) -> None:
        if self._record is None:
            return
        time, level, lines = self._record
        self._record = None
        if self._run is not None and self._last is not None and self._run.is_next_run(lines[0]):
            self._runs.append(self._run.finish(self._last))
            self._run = None
        if self._run is None:
            self._run = RunBuilder(self.source, time)
        self._last = time
        self._run.record(time, level, lines)


def parse_log(text: str, source: str) -> list[Run]:
    """Parse one log file's text. Any text gives a (possibly empty) list of runs."""
    parser = LogParser(source)
    parser.feed(text)
    return parser.close()


def _log_files(logs_dir: str) -> list[str]:
    try:
        names = os.listdir(logs_dir)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LocalError(f"{logs_dir}: cannot list: {exc.strerror or exc}") from None
    numbered = []
    for name in names:
        match = _LOG_FILE.fullmatch(name)
        if match:
            numbered.append((int(match.group(1) or 0), name))
    numbered.sort(reverse=True)  # the highest number is the oldest run
    return [os.path.join(logs_dir, name) for _, name in numbered]


def read_logs(logs_dir: str, limit: int | None = None) -> list[Run]:
    """Read ``letsencrypt.log`` and its rotated copies, oldest run first.

    ``limit`` keeps only the newest ``limit`` files. A missing directory
    gives ``[]``; an unreadable one or file raises :class:`LocalError`.
    """
    paths = _log_files(logs_dir)
    if limit is not None:
        paths = paths[max(len(paths) - limit, 0):]
    runs: list[Run] = []
    for path in paths:
        runs.extend(_read_file(path))
    return runs


def _read_file(path: str) -> list[Run]:
    parser = LogParser(path)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as stream:
            for chunk in iter(lambda: stream.read(1 << 16), ""):
                parser.feed(chunk)
    except FileNotFoundError:
        return []  # rotated away by a certbot starting now
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None
    return parser.close()


def last_events(runs: Iterable[Run]) -> dict[str, LogEvent]:
    """The newest event of each lineage, a simulated one only if there is no other.

    ``runs`` must be oldest first, as :func:`read_logs` returns them; within
    a run, events are in log order.
    """
    real: dict[str, LogEvent] = {}
    simulated: dict[str, LogEvent] = {}
    for run in runs:
        for event in run.events:
            (simulated if event.outcome == "simulated" else real)[event.lineage] = event
    return {**simulated, **real}


def last_events_for(logs_dir: str, lineages: Collection[str]) -> dict[str, LogEvent]:
    """The newest event of each named lineage, reading the newest logs first.

    certbot keeps up to 1,000 rotated logs; a renew run mentions every
    lineage, so this usually stops after a file or two instead of reading
    them all. Lineages never mentioned are absent from the result.
    """
    wanted = set(lineages)
    found: dict[str, LogEvent] = {}
    simulated: dict[str, LogEvent] = {}
    for path in reversed(_log_files(logs_dir)):
        for run in reversed(_read_file(path)):
            for event in reversed(run.events):
                if event.lineage not in wanted:
                    continue
                if event.outcome == "simulated":
                    simulated.setdefault(event.lineage, event)
                else:
                    found.setdefault(event.lineage, event)
        if len(found) == len(wanted):
            break
    return {**simulated, **found}
