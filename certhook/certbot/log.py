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
    "MAX_FILE_BYTES", "MAX_LINE", "LogEvent", "LogParser", "Run", "last_events",
    "last_events_for", "log_files", "parse_log", "read_log_file", "read_logs",
]

# Outcomes that are a lineage's last event only when it has no renewal outcome.
_FALLBACK = ("simulated", "conf_error")
_LOG_FILE = re.compile(r"letsencrypt\.log(?:\.([0-9]{1,9}))?")  # not "letsencrypt.log.2.gz"
# asctime:levelname:name:message, certbot's file format since 0.1
_RECORD = re.compile(r"(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d),(\d{3}):([A-Z]+):([^:]*):(.*)")


#: Longest line kept, in characters: a longer one is cut to this length (the
#: rest is skipped). certbot's longest lines are JWS bodies of a few KiB;
#: what certhook reads is in the first hundred characters of a record.
MAX_LINE = 64 * 1024
#: Most lines a record keeps (hook output, tracebacks): later ones are skipped.
MAX_RECORD_LINES = 2000
#: Most bytes read of one log file: of a larger one, the first quarter (the
#: run's version and arguments) and the last three quarters (the latest
#: lineages and the summary). certbot 5.8 logs under 5 KiB per lineage in
#: the runs of tests/data/certbot-logs, so this holds thousands of them;
#: parsing it takes ~1.5 s on a loaded 2-core machine (bench/log.py).
MAX_FILE_BYTES = 16 * 1024 * 1024
_CHUNK = 1 << 16


class LogParser:
    """Incremental parser: :meth:`feed` text in any pieces, then :meth:`close`.

    Linear in its input: a line longer than :data:`MAX_LINE` is cut, a
    record longer than :data:`MAX_RECORD_LINES` lines loses the rest.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self._pieces: list[str] = []  # the line being read, not yet ended
        self._size = 0  # characters in _pieces
        self._runs: list[Run] = []
        self._run: RunBuilder | None = None
        self._record: tuple[datetime, str, list[str]] | None = None
        self._last: datetime | None = None

    def feed(self, text: str) -> None:
        """Add text; whole lines are parsed now, a partial one is kept (up to
        :data:`MAX_LINE` characters of it)."""
        *complete, rest = text.split("\n")
        if complete:
            self._partial(complete[0])
            first = "".join(self._pieces)
            self._pieces, self._size = [], 0
            self._line(first.rstrip("\r"))
            for line in complete[1:]:
                self._line(line[:MAX_LINE].rstrip("\r"))
        self._partial(rest)

    def _partial(self, piece: str) -> None:
        room = MAX_LINE - self._size
        if piece and room > 0:
            piece = piece[:room]
            self._pieces.append(piece)
            self._size += len(piece)

    def gap(self) -> None:
        """Text was skipped here: drop the partial line and the record it is
        in; continuation lines up to the next record are dropped too."""
        self._pieces, self._size = [], 0
        self._flush()

    def close(self) -> list[Run]:
        """Parse what is left and return every run, in log order."""
        if self._pieces:
            self._line("".join(self._pieces).rstrip("\r"))
            self._pieces, self._size = [], 0
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
            if self._record is not None and len(self._record[2]) < MAX_RECORD_LINES:
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


def log_files(logs_dir: str) -> list[str]:
    """``letsencrypt.log`` and its rotated copies in ``logs_dir``, oldest first.

    A missing directory gives ``[]``; one that cannot be listed raises
    :class:`LocalError`.
    """
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


def read_logs(logs_dir: str, limit: int | None = None,
              deadline: float | None = None) -> list[Run]:
    """Read ``letsencrypt.log`` and its rotated copies, oldest run first.

    ``limit`` keeps only the newest ``limit`` files; ``deadline`` is as for
    :func:`read_log_file`. A missing directory gives ``[]``; an unreadable
    one or file raises :class:`LocalError`.
    """
    paths = log_files(logs_dir)
    if limit is not None:
        paths = paths[max(len(paths) - limit, 0):]
    runs: list[Run] = []
    for path in paths:
        runs.extend(read_log_file(path, deadline=deadline))
    return runs


def read_log_file(path: str, max_bytes: int = MAX_FILE_BYTES,
                  deadline: float | None = None) -> list[Run]:
    """The runs in one log file, in log order, reading at most ``max_bytes``.

    Of a larger file, the first quarter and the last three quarters are
    read (a run opens with its version and arguments, and ends with its
    summary). ``deadline`` is a :func:`time.monotonic` value: reading past
    it raises :class:`LocalError`, not a partial run (half a run could
    report a lineage renewed whose failure was not read yet). A file
    rotated away meanwhile gives ``[]``.
    """
    import codecs
    import time

    parser = LogParser(path)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            spans = [(0, size)]
            if size > max_bytes:
                spans = [(0, max_bytes // 4), (size - (max_bytes - max_bytes // 4), size)]
            for number, (start, end) in enumerate(spans):
                if number:  # skip to the start of the next whole line
                    parser.feed(decoder.decode(b"", final=True))
                    decoder.reset()
                    parser.gap()
                    stream.seek(start)
                    start += len(stream.readline(MAX_LINE))  # what is left of a longer
                    # line reads as continuation lines, which gap() makes dropped
                while start < end:
                    if deadline is not None and time.monotonic() > deadline:
                        raise LocalError(f"{path}: reading stopped at the deadline"
                                         f" ({start // 1048576} MiB in)")
                    chunk = stream.read(min(_CHUNK, end - start))
                    if not chunk:
                        break
                    start += len(chunk)
                    parser.feed(decoder.decode(chunk))
            parser.feed(decoder.decode(b"", final=True))
    except FileNotFoundError:
        return []  # rotated away by a certbot starting now
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None
    return parser.close()


def last_events(runs: Iterable[Run]) -> dict[str, LogEvent]:
    """The newest event of each lineage; a simulated one, or a conf_error (of a
    listing), only if there is no other.

    ``runs`` must be oldest first, as :func:`read_logs` returns them; within
    a run, events are in log order.
    """
    real: dict[str, LogEvent] = {}
    fallback: dict[str, LogEvent] = {}
    for run in runs:
        for event in run.events:
            (fallback if event.outcome in _FALLBACK else real)[event.lineage] = event
    return {**fallback, **real}


def last_events_for(logs_dir: str, lineages: Collection[str]) -> dict[str, LogEvent]:
    """The newest event of each named lineage, reading the newest logs first.

    certbot keeps up to 1,000 rotated logs; a renew run mentions every
    lineage, so this usually stops after a file or two instead of reading
    them all. Lineages never mentioned are absent from the result.
    """
    wanted = set(lineages)
    found: dict[str, LogEvent] = {}
    simulated: dict[str, LogEvent] = {}
    for path in reversed(log_files(logs_dir)):
        for run in reversed(read_log_file(path)):
            for event in reversed(run.events):
                if event.lineage not in wanted:
                    continue
                if event.outcome in _FALLBACK:
                    simulated.setdefault(event.lineage, event)
                else:
                    found.setdefault(event.lineage, event)
        if len(found) == len(wanted):
            break
    return {**simulated, **found}
