"""One module per ``certhook`` subcommand.

Each module defines ``add_arguments(parser)`` and ``run(args, parser) -> int``;
``parser`` is the subcommand's own, for ``parser.error`` on usage errors.
Modules import the rest of certhook lazily, inside ``run``.
"""
