"""The ``--format`` renderings of probe results, and their table, :data:`FORMATS`.

Text, json and nagios are here; prtg and prometheus have modules of their
own. Each renderer takes the results in input order and returns the whole
output as one string, ending in a newline. A format is one
:class:`OutputFormat` row: the command line's choices, docs/probe.md (a test
holds its sections to the table) and the tests all read the table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable

from certhook.escape import for_terminal
from certhook.probe.authority import UNKNOWN_PREFIXES
from certhook.probe.lifetime import describe_left
from certhook.probe.result import STATUSES, ProbeOptions, ProbeResult, rank, worst_status

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "FORMATS", "OutputFormat", "render", "render_json", "render_nagios", "render_text",
    "summary",
]


def _counts(results: Sequence[ProbeResult]) -> str:
    counts = {status: 0 for status in STATUSES}
    for result in results:
        counts[result.status] += 1
    return ", ".join(f"{count} {status}" for status, count in counts.items() if count)


def display(result: ProbeResult) -> str:
    """The target as text and nagios show it: its label, and the servername if one was given."""
    target = result.target
    named = target.servername and target.servername.lower().rstrip(".") != target.host
    return f"{target.label} ({target.servername})" if named else target.label


def summary(results: Sequence[ProbeResult]) -> str:
    """``3 targets: 2 ok, 1 critical``."""
    noun = "target" if len(results) == 1 else "targets"
    return f"{len(results)} {noun}: {_counts(results) or 'none'}"


def _details(result: ProbeResult) -> str:
    if result.error is not None:
        return result.error
    # What the CA could not tell (ARI, CRL) is shown, though it changes no status.
    unknown = [f" ({note})" for note in result.notes if note.startswith(UNKNOWN_PREFIXES)]
    if result.reasons:
        return "; ".join(result.reasons) + "".join(unknown)
    return _leaf_details(result) + "".join(unknown)


def _leaf_details(result: ProbeResult) -> str:
    leaf = result.leaf
    assert leaf is not None
    parts = [f"CN={leaf.subject_cn}" if leaf.subject_cn else leaf.subject or "(no subject)"]
    if leaf.issuer_cn:
        parts.append(f"issuer {leaf.issuer_cn}")
    parts.append(f"{leaf.public_key_type.upper()} {leaf.public_key_bits}")
    if result.tls_version:
        parts.append(result.tls_version)
    return ", ".join(parts)


def _left(result: ProbeResult) -> str:
    """Time left: whole days, hours when less than two days are left (either way)."""
    seconds = result.seconds_left
    if seconds is not None and abs(seconds) < 2 * 86400:
        return f"{int(seconds / 3600)}h" if abs(seconds) >= 3600 else f"{int(seconds / 60)}m"
    return "-" if result.days_left is None else f"{result.days_left}d"


def render_text(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    """One aligned row per target, then a summary line."""
    rows = [
        (
            result.status.upper(),
            _left(result),
            result.not_after.strftime("%Y-%m-%d") if result.not_after else "-",
            # names and reasons quote the served certificate: no control characters
            for_terminal(display(result)),
            for_terminal(_details(result)),
        )
        for result in results
    ]
    widths = [max((len(row[column]) for row in rows), default=0) for column in range(4)]
    lines = [
        f"{status:<{widths[0]}}  {days:>{widths[1]}}  {date:<{widths[2]}}"
        f"  {label:<{widths[3]}}  {details}"
        for status, days, date, label, details in rows
    ]
    lines.append(summary(results))
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    """A JSON list of :meth:`ProbeResult.to_json` objects, one per line.

    One line per object keeps the output greppable, and lets :mod:`json`
    use its C encoder (``indent`` falls back to the Python one, ten times
    slower on a few hundred results).
    """
    if not results:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(result.to_json()) for result in results) + "\n]\n"


# The monitoring-plugins guidelines: a performance-data label is quoted
# when it holds anything but word characters, and can hold neither '=' nor
# a single quote.
_PLAIN_LABEL = re.compile(r"\w+")


def _perf_label(text: str) -> str:
    text = for_terminal(text).replace("=", "_").replace("'", "_")
    return text if _PLAIN_LABEL.fullmatch(text) else f"'{text}'"


def _nagios_line(result: ProbeResult) -> str:
    # One line each: a newline from a certificate would end the plugin's status line.
    if result.error is not None:
        return for_terminal(f"{display(result)}: {result.error}")
    if result.reasons:
        return for_terminal(f"{display(result)}: {'; '.join(result.reasons)}")
    assert result.not_after is not None
    left = (f"{describe_left(result.seconds_left)} left" if result.seconds_left is not None
            else f"{result.days_left} days left")
    return for_terminal(f"{display(result)}: {left}"
            f" (not after {result.not_after.strftime('%Y-%m-%d')})")


def _number(value: float) -> str:
    """A perfdata figure: an integer as such, else two decimals."""
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def day_limits(result: ProbeResult, options: ProbeOptions) -> tuple[float, float]:
    """``--warn`` and ``--crit`` for this certificate, in days (a bare number as given)."""
    lifetime = result.lifetime_seconds or 0
    return (options.warn.seconds_for(lifetime) / 86400, options.crit.seconds_for(lifetime) / 86400)


def _perfdata(result: ProbeResult, options: ProbeOptions, several: bool) -> list[str]:
    if result.days_left is None:
        return []
    warn, crit = day_limits(result, options)
    suffix = f"_{result.target.label}" if several else ""
    days = _perf_label(f"days{suffix}") if several else "days"
    data = [f"{days}={result.days_left};{_number(warn)};{_number(crit)}"]
    if result.seconds_left is not None:
        seconds = _perf_label(f"seconds{suffix}") if several else "seconds"
        lifetime = result.lifetime_seconds or 0
        data.append(f"{seconds}={result.seconds_left}s;{options.warn.limit_seconds(lifetime)};"
                    f"{options.crit.limit_seconds(lifetime)}")
    return data


def render_nagios(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    """Plugin output: one status line with performance data, then one line per target.

    ``days=N;WARN;CRIT`` carries the day thresholds as plain numbers (alert
    at or below), as check_ssl_cert does; a relative threshold is given in
    days for that certificate's lifetime. ``seconds=Ns;WARN;CRIT`` is the
    same in seconds, exact where days are rounded down. With several
    targets the first line counts them and names the worst, the long text
    lists every target worst first, and each gets its own ``days_TARGET``
    and ``seconds_TARGET`` labels.
    """
    worst = worst_status(results)
    ranked = rank(results)
    perfdata = []
    for result in results:
        perfdata += _perfdata(result, options, len(results) > 1)
    perf = f" | {' '.join(perfdata)}" if perfdata else ""
    if len(results) == 1:
        head = _nagios_line(results[0])
    else:
        head = summary(results)
        if ranked and ranked[0].status != "ok":
            head += f"; {_nagios_line(ranked[0])}"
    # A '|' in free text would start performance data.
    lines = [f"CERTHOOK {worst.upper()} - {head.replace('|', '/')}{perf}"]
    if len(results) > 1:
        lines += [f"{result.status.upper()} {_nagios_line(result).replace('|', '/')}"
                  for result in ranked]
    return "\n".join(lines) + "\n"


def _render_prtg(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    from certhook.probe.prtg import render_prtg

    return render_prtg(results, options)


def _render_prometheus(results: Sequence[ProbeResult], options: ProbeOptions) -> str:
    from certhook.probe.prometheus import render_prometheus

    return render_prometheus(results, options)


Renderer = Callable[["Sequence[ProbeResult]", ProbeOptions], str]


@dataclass(frozen=True)
class OutputFormat:
    """One ``--format``: its name, what it is for, the media type of its output
    (what a test parses it as), and the function that renders it."""

    name: str
    summary: str
    media_type: str
    render: Renderer


# fmt: off
_ROWS = (
    OutputFormat("text", "one aligned row per target, then a count (default)", "text/plain",
                 render_text),
    OutputFormat("json", "a list of objects, one per target: the documented contract",
                 "application/json", render_json),
    OutputFormat("nagios", "monitoring-plugins status line, performance data, one line per"
                 " target", "text/plain", render_nagios),
    OutputFormat("prtg", "an EXE/Script Advanced sensor's JSON", "application/json",
                 _render_prtg),
    # The text exposition format, version 0.0.4 (Prometheus "Exposition formats").
    OutputFormat("prometheus", "metrics for node_exporter's textfile collector",
                 "text/plain; version=0.0.4", _render_prometheus),
)
# fmt: on

#: Every ``--format`` by name, in the order the help and the docs list them.
FORMATS: Mapping[str, OutputFormat] = MappingProxyType({row.name: row for row in _ROWS})


def render(results: Sequence[ProbeResult], format: str, options: ProbeOptions) -> str:
    """``results`` in ``format`` (a key of :data:`FORMATS`)."""
    return FORMATS[format].render(results, options)
