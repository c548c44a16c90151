"""``certhook install-hook``: put the drop-in hook into certbot's ``renewal-hooks``.

Copies ``certhook.sh`` into ``CONFIG_DIR/renewal-hooks/deploy/`` (with
``--post``, into ``post/`` as well) with mode 0755, where certbot runs it
after every renewal (and once per renew run); the script takes its kind
from its directory.

The installed copy names the certhook that installed it by absolute path
(this interpreter's ``certhook`` launcher, else ``python -m certhook``):
certbot run from cron or a systemd timer has ``PATH=/usr/sbin:/usr/bin:
/sbin:/bin``, where a certhook in a venv or pipx is not, and the drop-in
would fall back to its bash client (issue 8.1). Idempotent: an identical
file is left alone; a different one (an older certhook's, another
interpreter's) is replaced atomically.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

DEFAULT_CONFIG_DIR = "/etc/letsencrypt"
MODE = 0o755
DROPIN = "certhook.sh"
# The line of the drop-in that install-hook fills in.
_SLOT = b"certhook_installed=()\n"
# What cron and systemd run certbot (and so its hooks) with.
HOOK_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def dropin_path() -> str:
    """The drop-in shipped with this certhook (package data; ``hooks/`` links to it)."""
    import certhook.client

    return os.path.join(os.path.dirname(certhook.client.__file__), "dropins", DROPIN)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config-dir", default=DEFAULT_CONFIG_DIR, metavar="DIR",
                        help=f"certbot's configuration directory (default {DEFAULT_CONFIG_DIR})")
    parser.add_argument("--post", action="store_true",
                        help="also install the post hook (renewal-hooks/post: once per certbot"
                             " renew, reports failed renewals too)")


def _works(command: Sequence[str]) -> bool:
    """Whether ``command --version`` is this certhook, run as certbot runs hooks."""
    import subprocess

    from certhook import __version__

    try:
        proc = subprocess.run([*command, "--version"], cwd="/", env={"PATH": HOOK_PATH},
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and proc.stdout.split() == [b"certhook", __version__.encode()]


def this_certhook() -> list[str] | None:
    """The absolute command that runs this certhook from anywhere, or None.

    The ``certhook`` launcher beside this interpreter (a venv's or pipx's
    ``bin/``), else ``INTERPRETER -m certhook``; each is checked by running
    it with certbot's hook PATH, from ``/``. None when neither works (a
    checkout on ``PYTHONPATH``): the drop-in then looks on its PATH.
    """
    executable = sys.executable
    if not executable or not os.path.isabs(executable):
        return None
    launcher = os.path.join(os.path.dirname(executable), "certhook")
    candidates = [[executable, "-m", "certhook"]]
    if os.access(launcher, os.X_OK):
        candidates.insert(0, [launcher])
    for command in candidates:
        if not any(c in word for word in command for c in "\n\r\0") and _works(command):
            return command
    return None


def render(command: Sequence[str] | None) -> bytes:
    """The drop-in with ``command`` written into it (unchanged for None)."""
    from certhook.errors import LocalError

    source = dropin_path()
    try:
        with open(source, "rb") as stream:
            data = stream.read()
    except OSError as exc:
        raise LocalError(f"{source}: the drop-in is missing from this certhook"
                         f" installation: {exc.strerror or exc}") from None
    if not command:
        return data
    if data.count(_SLOT) != 1:
        raise LocalError(f"{source}: no {_SLOT.decode().strip()} line to fill in")
    import shlex

    words = " ".join(shlex.quote(word) for word in command)
    return data.replace(_SLOT, f"certhook_installed=({words})\n".encode())


def install(config_dir: str, kind: str, command: Sequence[str] | None = None) -> tuple[str, str]:
    """Install one drop-in that runs ``command`` (None: what it finds on PATH);
    returns (its path, "installed" | "updated" | "unchanged")."""
    from certhook.client.files import write_atomic
    from certhook.errors import LocalError

    data = render(command)
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
    import shlex

    command = this_certhook()
    kinds = ["deploy", "post"] if args.post else ["deploy"]
    for kind in kinds:
        target, what = install(args.config_dir, kind, command)
        when = "renew run" if kind == "post" else "renewal"
        if what == "unchanged":
            print(f"certhook install-hook: {target} is already installed")
        else:
            print(f"certhook install-hook: {what} {target}; certbot runs it after every {when}")
    if command is None:
        from certhook.client.submit import warn

        warn("install-hook", [f"cannot run this certhook by an absolute path ({sys.executable}"
                              " -m certhook fails from /): the hook looks for certhook on"
                              f" certbot's PATH, else uses its bash client"], None)
        return 0
    print(f"certhook install-hook: it runs {shlex.join(command)}")
    flags = [f"--deploy-hook {shlex.quote(shlex.join([*command, 'hook']))}"]
    if args.post:
        flags.append(f"--post-hook {shlex.quote(shlex.join([*command, 'hook', '--post']))}")
    print(f"certhook install-hook: instead of the drop-in, certbot can run it as:"
          f" certbot renew {' '.join(flags)}")
    return 0
