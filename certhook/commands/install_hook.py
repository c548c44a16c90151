"""``certhook install-hook``: put the drop-in hook into certbot's ``renewal-hooks``.

Copies ``certhook.sh`` into ``CONFIG_DIR/renewal-hooks/deploy/`` (with
``--post``, ``post/``) with mode 0755, where certbot runs it after every
renewal (every renew run); the script takes its kind from that directory.
Idempotent: an identical file is left alone; a different one (an older
certhook's) is replaced atomically.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
MODE = 0o755


DROPIN = "certhook.sh"


def dropin_path() -> str:
    """The drop-in shipped with this certhook (package data; ``hooks/`` links to it)."""
    import certhook.client

    return os.path.join(os.path.dirname(certhook.client.__file__), "dropins", DROPIN)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR",
                        help=f"certbot's configuration directory (default {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--post", action="store_true",
                        help="install the post hook (renewal-hooks/post: once per certbot renew,"
                             " also reports failures) instead of the deploy hook")


def install(config_dir: str, kind: str) -> tuple[str, str]:
    """Install one drop-in; returns (its path, "installed" | "updated" | "unchanged")."""
    from certhook.client.files import write_atomic
    from certhook.errors import LocalError

    source = dropin_path()
    try:
        with open(source, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise LocalError(f"{source}: the drop-in is missing from this certhook"
                         f" installation: {exc.strerror or exc}") from None
    if not os.path.isdir(config_dir):
        raise LocalError(f"{config_dir}: no such directory (is certbot installed here?"
                         " --config-dir names another)")
    directory = os.path.join(config_dir, "renewal-hooks", kind)
    target = os.path.join(directory, DROPIN)
    try:
        os.makedirs(directory, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise LocalError(f"cannot create {directory}: {exc.strerror or exc}") from None
    try:
        with open(target, "rb") as stream:
            old: bytes | None = stream.read()
        same_mode = os.stat(target).st_mode & 0o7777 == MODE
    except FileNotFoundError:
        old, same_mode = None, False
    except OSError as exc:
        raise LocalError(f"{target}: {exc.strerror or exc}") from None
    if old == data and same_mode:
        return target, "unchanged"
    write_atomic(directory, os.path.basename(target), data, mode=MODE)
    return target, "installed" if old is None else "updated"


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    kind = "post" if args.post else "deploy"
    target, what = install(args.config_dir, kind)
    if what == "unchanged":
        print(f"certhook install-hook: {target} is already installed")
    else:
        print(f"certhook install-hook: {what} {target}; certbot runs it after every"
              f" {'renew run' if kind == 'post' else 'renewal'}")
    return 0
