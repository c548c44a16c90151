"""``certhook report``: submit every certbot lineage to the audit server (a full sync).

Each lineage with a readable certificate is sent with ``event sync``, its
names, its certificate's fingerprint and its ``[ports]``. Run it once after
installing certhook, or from cron to make sure the server knows every
lineage. What cannot be delivered waits in the spool; the exit status is
then 1.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from certhook.client.config import add_client_arguments

    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR",
                        help=f"certbot's configuration directory (default {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--lineage", action="append", metavar="NAME",
                        help="report only this lineage (repeatable)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="say nothing on stdout when all went well")
    add_client_arguments(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from certhook.certbot.lineage import read_state
    from certhook.client.changes import Change
    from certhook.client.config import config_from_args
    from certhook.client.submit import deliver, submissions_for, warn
    from certhook.client.transport import Deadline

    config = config_from_args(args)
    state = read_state(args.config_dir)
    wanted = set(args.lineage or ())
    unknown = wanted - {lineage.name for lineage in state.lineages}
    if unknown:
        parser.error(f"no such lineage in {args.config_dir}: {', '.join(sorted(unknown))}")
    notes = list(config.warnings)
    changes = []
    for lineage in state.lineages:
        if wanted and lineage.name not in wanted:
            continue
        if lineage.certificate is None or not lineage.domains:
            notes.append(f"skipped {lineage.name}: no readable certificate")
            continue
        changes.append(Change("sync", lineage.name, lineage.domains,
                              lineage.certificate.fingerprint_sha256,
                              acme_server=lineage.server,
                              renew_before=lineage.renew_before))
    subs, problems = submissions_for(changes, config)
    notes.extend(problems)
    outcome = deliver(config, subs, Deadline(config.deadline))
    mine = [s for s in outcome.delivered if s in subs]
    if mine and not args.quiet:
        servers = ", ".join(dict.fromkeys(s.server for s in mine if s.server))
        lineages = len({s.request.lineage for s in mine})
        print(f"certhook report: reported {lineages} lineage{'' if lineages == 1 else 's'}"
              f" to {servers}")
    elif not changes and not args.quiet:
        print(f"certhook report: no lineage to report in {args.config_dir}")
    said = warn("report", [*notes, outcome.warning()], config)
    sys.stdout.flush()
    return 1 if said and not outcome.ok else 0
