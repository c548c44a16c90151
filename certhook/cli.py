"""The ``certhook`` command line: one subcommand per module in ``certhook.commands``.

Only the module of the subcommand being run is imported: ``certhook hook``
runs on every certbot renewal, and its start-up time is a product figure
(bench/hook.py). The command lines certbot runs (:data:`CERTBOT_HOOKS`) do
not even build the parser: ``argparse`` imports ``re``, ``gettext`` and
``locale``, ~8 ms of a hook whose budget is ~5 ms above a bare interpreter.
"""

from __future__ import annotations

import sys

# typing costs ~2.5 ms at start-up; mypy reads this constant the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence

# name -> (module under certhook.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "scan": ("scan", "list certbot lineages, their certificates and last renewal outcome"),
    "hook": ("hook", "certbot deploy/post hook: report renewed lineages to the audit server"),
    "run": ("run", "run a command (certbot renew ...) and report what it renewed or failed"),
    "report": ("report", "submit every lineage to the audit server (a full sync)"),
    "flush": ("flush", "deliver submissions waiting in the spool"),
    "install-hook": ("install_hook", "install the drop-in hook into certbot's renewal-hooks"),
    "probe": ("probe", "connect to TLS endpoints and check their certificates"),
    "serve": ("serve", "run the audit server"),
    "keys": ("keys", "manage the audit server's accounts and API keys"),
    "status": ("status", "print the audit server's report in the terminal"),
    "recheck": ("recheck", "have the audit server probe a target now (--wait for the result)"),
    "targets": ("targets", "list, remove, mute and unmute the audit server's targets"),
    "db": ("db", "migrate the audit server's database schema, or copy it to another database"),
}


# The exact command lines certbot runs on every renewal -> the hook's kind:
# --deploy-hook "certhook hook", and the drop-ins (certhook/client/dropins),
# which name theirs. These go straight to the hook, flags at their defaults
# but the kind; any other command line goes through argparse.
# tests/test_hook_startup.py holds each to what argparse makes of it.
CERTBOT_HOOKS: dict[tuple[str, ...], str | None] = {
    ("hook",): None,
    ("hook", "--deploy"): "deploy",
    ("hook", "--post"): "post",
}


def _formatter() -> type[argparse.HelpFormatter]:
    """argparse's help formatter, sized with os.get_terminal_size, not shutil's.

    The stock formatter imports shutil (and with it bz2, lzma, zlib: ~2.5 ms)
    the first time an argument is added, on every run that parses flags.
    """
    import argparse
    import os

    class Formatter(argparse.HelpFormatter):
        def __init__(self, prog: str) -> None:
            try:
                columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
            except (ValueError, OSError):
                columns = 80
            super().__init__(prog, width=max(columns, 40) - 2)

    return Formatter


def _build_parser(selected: str | None) -> argparse.ArgumentParser:
    import argparse
    import importlib

    from certhook import __version__

    formatter = _formatter()
    parser = argparse.ArgumentParser(
        prog="certhook",
        description="End-to-end monitoring of TLS certificates renewed by certbot.",
        formatter_class=formatter,
    )
    parser.add_argument("--version", action="version", version=f"certhook {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks on runtime failures"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # With a command named, only its parser is built (the hook's start-up);
    # without one, all of them, for the usage and help.
    for name, (module_name, help_text) in COMMANDS.items():
        if selected is not None and name != selected:
            continue
        command_parser = sub.add_parser(name, help=help_text, description=help_text,
                                        formatter_class=formatter)
        command_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS,
            help="show tracebacks on runtime failures",
        )
        if name == selected:
            module = importlib.import_module(f"certhook.commands.{module_name}")
            module.add_arguments(command_parser)
            command_parser.set_defaults(_module=module, _parser=command_parser)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line parsed: ``command``, ``debug``, the command's flags, and
    ``_module`` / ``_parser`` to run it with. Usage errors exit through argparse."""
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = _build_parser(selected if selected in COMMANDS else None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the certhook command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    certbot_hook = tuple(args_list)
    if certbot_hook in CERTBOT_HOOKS:
        from certhook.commands.hook import HookOptions, hook

        options = HookOptions(kind=CERTBOT_HOOKS[certbot_hook])
        return _run("hook", False, lambda: hook(options))
    args = parse_args(args_list)
    return _run(args.command, args.debug, lambda: args._module.run(args, args._parser))


def _run(command: str, debug: bool, call: Callable[[], int]) -> int:
    """``call()``, with certhook's errors as one line on stderr (tracebacks with --debug)."""
    from certhook.errors import CerthookError

    try:
        return call()
    except CerthookError as exc:
        if debug:
            raise
        print(f"certhook {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
