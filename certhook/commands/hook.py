"""``certhook hook``: the certbot hook that reports renewed (and failed) lineages.

For ``--deploy-hook``, ``--post-hook`` and certbot's ``renewal-hooks/``
directories. It never breaks certbot: every network step has a timeout and
the whole hook a deadline (10 s by default); whatever goes wrong, the
submissions wait in the spool, one warning line goes to stderr, and the
exit status is 0 (``--strict`` makes it 1).

Which lineages: a deploy hook's ``RENEWED_LINEAGE`` / ``RENEWED_DOMAINS``;
a post hook's ``RENEWED_DOMAINS`` / ``FAILED_DOMAINS``; with no variables,
the latest run in certbot's log (see :mod:`certhook.client.changes`), read
within half of what is left of the deadline and within the log reader's
caps (:mod:`certhook.certbot.log`: a huge log cannot stall certbot).

The deploy case is the fast path: it reads one ``cert.pem`` and opens one
connection, and imports nothing it does not need (no ``ssl``, ``json``,
``urllib``, no certificate parser, no ``re``). The command lines certbot
runs (``certhook hook``, ``certhook hook --deploy``: see
:data:`certhook.cli.CERTBOT_HOOKS`) come straight to :func:`hook`, without
argparse. tests/test_hook_startup.py lists the modules this path must not
load.
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
    from certhook.client.transport import Deadline

_LOG_RUN_MAX_AGE = 24 * 3600.0  # a hook without environment reports a run this recent


class HookOptions:
    """What the command line told ``certhook hook``.

    ``HookOptions()`` is the bare ``certhook hook`` that certbot runs: every
    flag not given (None, or False for switches), exactly what argparse makes
    of no flags (a test holds the two together). What a flag not given stands
    for (the 10 s deadline, the spool directory ...) is decided in one place,
    :func:`certhook.client.config.load_config`, for either path.
    """

    __slots__ = ("api_key_file", "ca_file", "config", "config_dir", "deadline", "debug", "kind",
                 "logs_dir", "server", "spool_dir", "strict", "verbose")

    def __init__(
        self,
        *,
        kind: str | None = None,
        strict: bool = False,
        config_dir: str | None = None,
        logs_dir: str | None = None,
        verbose: bool = False,
        debug: bool = False,
        config: str | None = None,
        server: str | None = None,
        api_key_file: str | None = None,
        spool_dir: str | None = None,
        ca_file: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self.kind = kind  # "deploy", "post", or None: told apart by certbot's variables
        self.strict = strict
        self.config_dir = config_dir
        self.logs_dir = logs_dir
        self.verbose = verbose
        self.debug = debug
        self.config = config  # the flags of certhook.client.config.add_client_arguments
        self.server = server
        self.api_key_file = api_key_file
        self.spool_dir = spool_dir
        self.ca_file = ca_file
        self.deadline = deadline

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> HookOptions:
        """The options argparse parsed (with the top-level ``--debug``)."""
        return cls(**{name: getattr(args, name) for name in cls.__slots__})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HookOptions):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        given = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"HookOptions({given})"


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


def _log_deadline(deadline: Deadline) -> float:
    """When reading certbot's log must stop (a :func:`time.monotonic` value):
    after half of what is left, so that there is time to deliver (or spool)
    what it finds."""
    return time.monotonic() + max(deadline.remaining(), 0.0) / 2


def _state_and_run(environ: Mapping[str, str], options: HookOptions, notes: list[str],
                   deadline: Deadline) -> tuple[CertbotState | None, Run | None]:
    from certhook.certbot.lineage import read_state
    from certhook.client.changes import certbot_dirs, runs_since
    from certhook.errors import LocalError

    config_dir, logs_dir = certbot_dirs(environ, None, options.config_dir, options.logs_dir)
    state: CertbotState | None = None
    run: Run | None = None
    try:
        state = read_state(config_dir)
    except LocalError as exc:
        notes.append(str(exc))
    try:
        runs = runs_since(logs_dir, None, deadline=_log_deadline(deadline))
        run = runs[-1] if runs else None
    except LocalError as exc:
        notes.append(str(exc))
    return state, run


def _changes(kind: str, environ: Mapping[str, str], options: HookOptions,
             notes: list[str], deadline: Deadline) -> list[Change]:
    from certhook.client import changes as ch

    if kind == "deploy" and environ.get("RENEWED_LINEAGE"):
        change = ch.deploy_change(environ)
        if change.fingerprint is None:
            notes.append(f"cannot read {environ['RENEWED_LINEAGE']}/cert.pem: reporting"
                         f" {change.lineage} without its fingerprint")
        return [change]
    state, run = _state_and_run(environ, options, notes, deadline)
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
    return hook(HookOptions.from_namespace(args))


def hook(options: HookOptions) -> int:
    """Report what certbot changed; the exit status (0 whatever happened, unless strict)."""
    started = time.monotonic()
    config: ClientConfig | None = None
    try:
        from certhook.client.config import DEFAULT_SPOOL_DIR, ClientConfig, load_config
        from certhook.errors import CerthookError

        notes: list[str] = []
        try:
            config = load_config(options.config, server=options.server,
                                 api_key_file=options.api_key_file, spool_dir=options.spool_dir,
                                 deadline=options.deadline, ca_file=options.ca_file,
                                 certbot_dir=options.config_dir)
        except CerthookError as exc:
            # Still find out what changed and spool it: a later flush, with
            # the configuration fixed, delivers it.
            notes.append(f"configuration unusable, nothing sent: {exc}")
            config = ClientConfig(spool_dir=options.spool_dir or os.environ.get(
                "CERTHOOK_SPOOL_DIR") or DEFAULT_SPOOL_DIR)
        return _hook(options, config, started, notes)
    except Exception as exc:  # never break certbot, whatever the fault
        if options.debug:
            raise
        from certhook.client.submit import warn
        from certhook.errors import CerthookError

        what = str(exc) if isinstance(exc, CerthookError) else f"{type(exc).__name__}: {exc}"
        key = os.environ.get("CERTHOOK_API_KEY")
        if key:
            what = what.replace(key, "***")
        warn("hook", [f"nothing reported: {what}"], config)
        return 1 if options.strict else 0


def _hook(options: HookOptions, config: ClientConfig, started: float,
          notes: list[str]) -> int:
    from certhook.client.changes import environment_kind
    from certhook.client.spool import Spool
    from certhook.client.submit import deliver, drop_delivered, submissions_for, warn
    from certhook.client.transport import Deadline
    from certhook.errors import CerthookError

    environ = os.environ
    deadline = Deadline(config.deadline - (time.monotonic() - started))
    kind = options.kind or environment_kind(environ)
    notes = [*config.warnings, *notes]
    try:
        changes = _changes(kind, environ, options, notes, deadline)
    except CerthookError as exc:
        notes.append(f"cannot tell what certbot renewed: {exc}")
        changes = []
    subs, problems = submissions_for(changes, config)
    notes.extend(problems)
    subs = drop_delivered(Spool(config.spool_dir), subs)
    outcome = deliver(config, subs, deadline)
    if options.verbose:
        for sub in outcome.delivered:
            request = sub.request
            print(f"certhook hook: delivered {request.event or 'add'}"
                  f" {request.lineage or ' '.join(request.domains)} (id {request.id})")
    warn("hook", [*notes, outcome.warning()], config)
    if options.strict and not outcome.ok:
        return 1
    return 0
