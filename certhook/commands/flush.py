"""``certhook flush``: deliver the submissions waiting in the spool.

Exit status 0 when the spool is empty afterwards; 1, with one summary line
on stderr, when submissions are still waiting or the server refused one
as malformed (it is then kept in ``rejected/``). Safe to run from cron
next to certbot: a flush already under way makes this one wait for it,
up to the deadline, rather than send the same files twice.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from certhook.client.submit import Outcome


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from certhook.client.config import add_client_arguments

    parser.add_argument("-q", "--quiet", action="store_true",
                        help="say nothing on stdout when all went well")
    add_client_arguments(parser)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from certhook.client.config import config_from_args
    from certhook.client.spool import Spool
    from certhook.client.submit import deliver, warn
    from certhook.client.transport import Deadline
    from certhook.errors import LocalError

    config = config_from_args(args)
    spool = Spool(config.spool_dir)
    if not spool.has_pending():
        if not args.quiet:
            print(f"certhook flush: nothing waiting in {config.spool_dir}")
        warn("flush", list(config.warnings), config)  # a typo in the file, say
        return 0
    deadline = Deadline(config.deadline)
    outcome = deliver(config, [], deadline, lock_wait=config.deadline / 2)
    try:
        left = spool.names()
    except LocalError as exc:
        left = []
        outcome.warnings.append(str(exc))
    delivered = outcome.delivered
    if delivered and not args.quiet:
        servers = ", ".join(dict.fromkeys(s.server for s in delivered if s.server))
        print(f"certhook flush: delivered {len(delivered)} submission"
              f"{'' if len(delivered) == 1 else 's'} to {servers}")
    warn("flush", [*config.warnings, *_problems(outcome, left, config.spool_dir)], config)
    return 1 if left or outcome.rejected or outcome.busy else 0


def _problems(outcome: Outcome, left: list[str], spool_dir: str) -> list[str]:
    """What to say about a flush, in parts of one warning line."""
    import time

    if not left:
        return [w for w in [outcome.warning()] if w] + (
            ["another certhook kept the spool locked until the deadline"] if outcome.busy else [])
    parts: list[str] = []
    if outcome.busy:
        parts.append("another certhook kept the spool locked until the deadline")
    oldest = left[0].split("-", 1)[0]
    since = ""
    if oldest.isdigit() and len(oldest) <= 13:
        since = time.strftime(", the oldest since %Y-%m-%d %H:%M",
                              time.localtime(int(oldest) / 1000))
    why = "; ".join(outcome.errors[-3:])
    parts.append(f"{len(left)} submission{'' if len(left) == 1 else 's'} still waiting"
                 f" in {spool_dir}{since}" + (f" ({why})" if why else ""))
    parts.extend(f"the server refused submission {s.request.id} as malformed"
                 f" ({s.error}); kept in {s.rejected}" for s in outcome.rejected)
    parts.extend(outcome.warnings)  # corrupt spool files moved aside, and the like
    return parts
