"""``certhook scan``: every certbot lineage, its certificate and its last renewal outcome.

The JSON field names are a public contract (README, "certhook scan --json").
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from certhook.certbot.lineage import Lineage
    from certhook.certbot.log import LogEvent

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
DEFAULT_LOGS_DIR = "/var/log/letsencrypt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR,
                        help=f"certbot's configuration directory (default {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--logs-dir", default=DEFAULT_LOGS_DIR,
                        help=f"certbot's logs directory (default {DEFAULT_LOGS_DIR})")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from certhook.certbot.lineage import read_state
    from certhook.certbot.log import last_events_for

    state = read_state(args.config_dir)
    events = last_events_for(args.logs_dir, {lin.name for lin in state.lineages})
    now = datetime.now(timezone.utc)
    rows = [lineage_json(lin, events.get(lin.name), now) for lin in state.lineages]
    if args.json:
        import json

        json.dump({"config_dir": state.config_dir, "lineages": rows,
                   "problems": list(state.problems)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(format_text(rows, state.problems))
    clean = not state.problems and all(not row["problems"] for row in rows)
    return 0 if clean else 1


def _rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # certbot logs local time without a zone
        moment = moment.astimezone()
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_json(event: LogEvent | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {"outcome": event.outcome, "time": _rfc3339(event.time),
            "message": event.message, "log_file": event.log_file}


def lineage_json(lineage: Lineage, event: LogEvent | None, now: datetime) -> dict[str, Any]:
    """One lineage as the JSON object documented in the README."""
    cert = lineage.certificate
    return {
        "name": lineage.name,
        "renewal_conf": lineage.renewal_conf,
        "domains": list(lineage.domains),
        "serial": cert.serial_hex if cert else None,
        "not_before": _rfc3339(cert.not_valid_before_utc) if cert else None,
        "not_after": _rfc3339(cert.not_valid_after_utc) if cert else None,
        "days_left": cert.days_left(now) if cert else None,
        "key_type": cert.public_key_type if cert else None,
        "key_bits": cert.public_key_bits if cert else None,
        "issuer": cert.issuer if cert else None,
        "fingerprint_sha256": cert.fingerprint_sha256 if cert else None,
        "version": lineage.version,
        "cert_path": lineage.cert_path,
        "authenticator": lineage.authenticator,
        "installer": lineage.installer,
        "server": lineage.server,
        "renew_before": lineage.renew_before,
        "last_event": event_json(event),
        "problems": list(lineage.problems),
    }


def _key(row: dict[str, Any]) -> str:
    if row["key_type"] is None:
        return "-"
    return f"{row['key_type'].upper()} {row['key_bits']}"


def _domains(row: dict[str, Any], width: int = 40) -> str:
    domains: list[str] = row["domains"]
    if not domains:
        return "-"
    text = domains[0]
    if len(domains) > 1:
        text += f" +{len(domains) - 1}"
    return text if len(text) <= width else text[: width - 1] + "~"


def format_text(rows: list[dict[str, Any]], problems: tuple[str, ...] = ()) -> str:
    """A table for people: one row per lineage, problems indented below it."""
    table = [("LINEAGE", "DOMAINS", "EXPIRES", "DAYS", "KEY", "LAST RENEWAL")]
    for row in rows:
        event = row["last_event"]
        last = "-" if event is None else f"{event['outcome']} {(event['time'] or '')[:10]}"
        table.append((
            row["name"],
            _domains(row),
            (row["not_after"] or "-")[:10],
            "-" if row["days_left"] is None else str(row["days_left"]),
            _key(row),
            last.strip(),
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, cells in enumerate(table):
        line = "  ".join(c.rjust(w) if j == 3 else c.ljust(w)
                         for j, (c, w) in enumerate(zip(cells, widths)))
        lines.append(line.rstrip())
        if i:
            row = rows[i - 1]
            event = row["last_event"]
            if event and event["outcome"] in ("failed", "hook_error") and event["message"]:
                lines.append(f"    {event['outcome']}: {event['message'][:200]}")
            lines += [f"    problem: {p}" for p in row["problems"]]
    lines += [f"problem: {p}" for p in problems]
    bad = sum(1 for row in rows if row["problems"])
    lines.append(f"{len(rows)} lineage(s), {bad} with problems")
    return "\n".join(lines) + "\n"
