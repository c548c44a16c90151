"""``certhook hook``: the certbot hook that reports renewed (and failed) lineages.

For ``--deploy-hook``, ``--post-hook`` and certbot's ``renewal-hooks/``
directories. It never breaks certbot: every network step has a timeout and
the whole hook a deadline (10 s by default); whatever goes wrong, the
submissions wait in the spool, one warning line goes to stderr, and the
exit status is 0 (``--strict`` makes it 1).

Which lineages: a deploy hook's ``RENEWED_LINEAGE`` / ``RENEWED_DOMAINS``;
a post hook's ``RENEWED_DOMAINS`` / ``FAILED_DOMAINS``; with no variables,
the latest run in certbot's log (see :mod:`certhook.client.changes`).

The deploy case is the fast path: it reads one ``cert.pem`` and opens one
connection, and imports nothing it does not need (no ``ssl``, ``json``,
``urllib``, no certificate parser).
"""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Mapping

    from certhook.certbot.lineage import CertbotState
    from certhook.certbot.log import Run
    from certhook.client.changes import Change
    from certhook.client.config import ClientConfig

_LOG_RUN_MAX_AGE = 24 * 3600.0  # a hook without environment reports a run this recent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from certhook.client.config import add_client_arguments

    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--deploy", dest="kind", action="store_const", const="deploy",
                      help="called as a deploy hook (default: told apart by certbot's variables)")
    kind.add_argument("--post", dest="kind", action="store_const", const="post",
                      help="called as a post hook: report RENEWED_DOMAINS and FAILED_DOMAINS,"
                           " or the latest run in certbot's log")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when anything was not delivered (default: always 0,"
                             " so that certbot never sees the hook fail)")
    parser.add_argument("--config-dir", metavar="DIR",
                        help="certbot's config directory, for post hooks"
                             " (default: from the certbot command line, else /etc/letsencrypt)")
    parser.add_argument("--logs-dir", metavar="DIR",
                        help="certbot's logs directory (default: likewise, else"
                             " /var/log/letsencrypt)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say on stdout what was delivered")
    add_client_arguments(parser)


def _state_and_run(environ: Mapping[str, str], args: argparse.Namespace,
                   notes: list[str]) -> tuple[CertbotState | None, Run | None]:
    from certhook.certbot.lineage import read_state
    from certhook.client.changes import certbot_dirs, runs_since
    from certhook.errors import LocalError

    config_dir, logs_dir = certbot_dirs(environ, None, args.config_dir, args.logs_dir)
    state: CertbotState | None = None
    run: Run | None = None
    try:
        state = read_state(config_dir)
    except LocalError as exc:
        notes.append(str(exc))
    try:
        runs = runs_since(logs_dir, None)
        run = runs[-1] if runs else None
    except LocalError as exc:
        notes.append(str(exc))
    return state, run


def _changes(kind: str, environ: Mapping[str, str], args: argparse.Namespace,
             notes: list[str]) -> list[Change]:
    from certhook.client import changes as ch

    if kind == "deploy" and environ.get("RENEWED_LINEAGE"):
        change = ch.deploy_change(environ)
        if change.fingerprint is None:
            notes.append(f"cannot read {environ['RENEWED_LINEAGE']}/cert.pem: reporting"
                         f" {change.lineage} without its fingerprint")
        return [change]
    state, run = _state_and_run(environ, args, notes)
    if kind == "post" and (environ.get("RENEWED_DOMAINS", "").strip()
                           or environ.get("FAILED_DOMAINS", "").strip()):
        return ch.from_post_environment(environ, state, run)
    # No usable variables: what the latest logged run did, if it is recent.
    if state is None or run is None or run.started is None:
        return []
    if time.time() - run.started.timestamp() > _LOG_RUN_MAX_AGE:  # naive = local time
        return []
    return ch.from_log(state, run)


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    started = time.monotonic()
    config: ClientConfig | None = None
    try:
        from certhook.client.config import ClientConfig, config_from_args
        from certhook.errors import CerthookError

        notes: list[str] = []
        try:
            config = config_from_args(args)
        except CerthookError as exc:
            # Still find out what changed and spool it: a later flush, with
            # the configuration fixed, delivers it.
            notes.append(f"configuration unusable, nothing sent: {exc}")
            config = ClientConfig(spool_dir=args.spool_dir or os.environ.get(
                "CERTHOOK_SPOOL_DIR") or "/var/lib/certhook/spool")
        return _hook(args, config, started, notes)
    except Exception as exc:  # never break certbot, whatever the fault
        if getattr(args, "debug", False):
            raise
        from certhook.client.submit import warn
        from certhook.errors import CerthookError

        what = str(exc) if isinstance(exc, CerthookError) else f"{type(exc).__name__}: {exc}"
        key = os.environ.get("CERTHOOK_API_KEY")
        if key:
            what = what.replace(key, "***")
        warn("hook", [f"nothing reported: {what}"], config)
        return 1 if args.strict else 0


def _hook(args: argparse.Namespace, config: ClientConfig, started: float,
          notes: list[str]) -> int:
    from certhook.client.changes import environment_kind
    from certhook.client.spool import Spool
    from certhook.client.submit import deliver, drop_delivered, submissions_for, warn
    from certhook.client.transport import Deadline
    from certhook.errors import CerthookError

    environ = os.environ
    deadline = Deadline(config.deadline - (time.monotonic() - started))
    kind = args.kind or environment_kind(environ)
    notes = [*config.warnings, *notes]
    try:
        changes = _changes(kind, environ, args, notes)
    except CerthookError as exc:
        notes.append(f"cannot tell what certbot renewed: {exc}")
        changes = []
    subs, problems = submissions_for(changes, config)
    notes.extend(problems)
    subs = drop_delivered(Spool(config.spool_dir), subs)
    outcome = deliver(config, subs, deadline)
    if args.verbose:
        for sub in outcome.delivered:
            request = sub.request
            print(f"certhook hook: delivered {request.event or 'add'}"
                  f" {request.lineage or ' '.join(request.domains)} (id {request.id})")
    warn("hook", [*notes, outcome.warning()], config)
    if args.strict and not outcome.ok:
        return 1
    return 0
