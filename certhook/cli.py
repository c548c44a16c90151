"""The ``certhook`` command line: one subcommand per module in ``certhook.commands``.

Only the module of the subcommand being run is imported: ``certhook hook``
runs on every certbot renewal, and its start-up time is a product figure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# typing costs ~2.5 ms at start-up; mypy reads this constant the same way.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

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
}


class _Formatter(argparse.HelpFormatter):
    """argparse's formatter sized with os.get_terminal_size, not shutil's.

    The stock formatter imports shutil (and with it bz2, lzma, zlib: ~2.5 ms)
    the first time an argument is added, on every run of the hook.
    """

    def __init__(self, prog: str) -> None:
        try:
            columns = int(os.environ.get("COLUMNS", "")) or os.get_terminal_size().columns
        except (ValueError, OSError):
            columns = 80
        super().__init__(prog, width=max(columns, 40) - 2)


def _build_parser(selected: str | None) -> argparse.ArgumentParser:
    from certhook import __version__

    parser = argparse.ArgumentParser(
        prog="certhook",
        description="End-to-end monitoring of TLS certificates renewed by certbot.",
        formatter_class=_Formatter,
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
                                        formatter_class=_Formatter)
        command_parser.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS,
            help="show tracebacks on runtime failures",
        )
        if name == selected:
            module = importlib.import_module(f"certhook.commands.{module_name}")
            module.add_arguments(command_parser)
            command_parser.set_defaults(_module=module, _parser=command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the certhook command line; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in args_list if not a.startswith("-")), None)
    parser = _build_parser(selected if selected in COMMANDS else None)
    args = parser.parse_args(args_list)
    from certhook.errors import CerthookError

    try:
        result: int = args._module.run(args, args._parser)
        return result
    except CerthookError as exc:
        if args.debug:
            raise
        print(f"certhook {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
