"""``certhook run [--] certbot renew ...``: run certbot, then report what it did.

The command runs with certhook's stdin, stdout and stderr (inherited, never
captured), and its exit status is certhook's: 128+N if a signal N killed it.
SIGINT and SIGTERM sent to certhook go on to the command; a Ctrl-C typed at
the terminal already reaches both, and is not sent twice.

Afterwards every lineage whose live certificate changed is reported as
``deployed``, and every failure in the log of that run as ``failed``
(:func:`certhook.client.changes.from_states`). certbot's directories come
from ``--config-dir`` / ``--logs-dir`` in the wrapped command, else its
defaults. Reporting problems print one warning line and never change the
exit status.
"""

from __future__ import annotations

import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    import subprocess
    from collections.abc import Callable, Sequence
    from datetime import datetime

    from certhook.certbot.lineage import CertbotState

# A signal the terminal sent (si_code SI_KERNEL) reached the whole foreground
# process group, certbot included; one another process sent did not.
_SI_KERNEL = 0x80


def add_arguments(parser: argparse.ArgumentParser) -> None:
    import argparse

    from certhook.client.config import add_client_arguments

    parser.add_argument("--config-dir", metavar="DIR",
                        help="certbot's config directory (default: the command's --config-dir,"
                             " else /etc/letsencrypt)")
    parser.add_argument("--logs-dir", metavar="DIR",
                        help="certbot's logs directory (default: the command's --logs-dir,"
                             " else /var/log/letsencrypt)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="say on stderr what was reported")
    add_client_arguments(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command to run, usually certbot renew ...")


def _start(argv: Sequence[str], preexec: Callable[[], object] | None = None
           ) -> subprocess.Popen[bytes]:
    import subprocess

    # preexec_fn is safe here: certhook run has no other threads.
    return subprocess.Popen(list(argv), preexec_fn=preexec)


def _wait_forwarding(argv: Sequence[str]) -> int:
    """Run ``argv``; forward SIGINT/SIGTERM to it; its exit status, shell style."""
    import signal

    forward = {signal.SIGINT, signal.SIGTERM}
    if not hasattr(signal, "sigtimedwait"):  # not Linux: forward from plain handlers
        proc = _start(argv)

        def relay(signum: int, frame: object) -> None:
            proc.send_signal(signum)

        old = {sig: signal.signal(sig, relay) for sig in forward}
        try:
            code = proc.wait()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        return 128 - code if code < 0 else code

    # Block the signals and take them with sigtimedwait: its siginfo says who
    # sent each one. The child gets the old mask back before it execs.
    watched = forward | {signal.SIGCHLD}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    try:
        proc = _start(argv, lambda: signal.pthread_sigmask(signal.SIG_SETMASK, old_mask))
        while proc.poll() is None:
            info = signal.sigtimedwait(watched, 0.5)
            if info is None or info.si_signo not in forward:
                continue
            if info.si_code != _SI_KERNEL and info.si_pid != proc.pid:
                try:
                    proc.send_signal(info.si_signo)
                except ProcessLookupError:
                    pass
        while signal.sigtimedwait(watched, 0) is not None:
            pass  # drop what came in meanwhile: it was for certbot
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    code = proc.returncode
    return 128 - code if code < 0 else code


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        parser.error("no command to run: certhook run [--] certbot renew ...")

    from datetime import datetime, timedelta

    from certhook.client.changes import certbot_dirs

    config_dir, logs_dir = certbot_dirs(os.environ, command, args.config_dir, args.logs_dir)
    before = _read_state(config_dir)
    # certbot logs local time to the millisecond; allow for a clock step.
    since = datetime.now() - timedelta(seconds=2)
    try:
        code = _wait_forwarding(command)
    except FileNotFoundError:
        print(f"certhook run: {command[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError:
        print(f"certhook run: {command[0]}: permission denied", file=sys.stderr)
        return 126
    try:
        _report(args, config_dir, logs_dir, before, since)
    except KeyboardInterrupt:
        pass
    except Exception as exc:  # reporting never changes certbot's exit status
        if getattr(args, "debug", False):
            raise
        print(f"certhook run: warning: nothing reported: {_safe(exc)}", file=sys.stderr)
    return code


def _safe(exc: BaseException) -> str:
    from certhook.errors import CerthookError

    text = str(exc) if isinstance(exc, CerthookError) else f"{type(exc).__name__}: {exc}"
    key = os.environ.get("CERTHOOK_API_KEY")
    return text.replace(key, "***") if key else text


def _read_state(config_dir: str) -> CertbotState | None:
    from certhook.certbot.lineage import read_state
    from certhook.errors import LocalError

    try:
        return read_state(config_dir)
    except LocalError:
        return None  # no certbot directory yet: everything after is new


def _report(args: argparse.Namespace, config_dir: str, logs_dir: str,
            before: CertbotState | None, since: datetime) -> None:
    from certhook.certbot.lineage import read_state
    from certhook.client.changes import from_states, runs_since
    from certhook.client.config import config_from_args
    from certhook.client.spool import Spool
    from certhook.client.submit import deliver, drop_delivered, submissions_for, warn
    from certhook.client.transport import Deadline
    from certhook.errors import LocalError

    config = config_from_args(args, config_dir)
    deadline = Deadline(config.deadline)
    notes = list(config.warnings)
    after = read_state(config_dir)
    try:
        runs = runs_since(logs_dir, since)
    except LocalError as exc:
        notes.append(str(exc))
        runs = []
    changes = from_states(before, after, runs)
    subs, problems = submissions_for(changes, config)
    notes.extend(problems)
    subs = drop_delivered(Spool(config.spool_dir), subs)
    started = time.monotonic()
    outcome = deliver(config, subs, deadline)
    if args.verbose:
        for sub in outcome.delivered:
            print(f"certhook run: reported {sub.request.event} {sub.request.lineage}"
                  f" (id {sub.request.id}) in {time.monotonic() - started:.2f}s",
                  file=sys.stderr)
    warn("run", [*notes, outcome.warning()], config)
