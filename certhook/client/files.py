"""Files that are either absent or whole: write to a temporary name, fsync, rename.

Used for spool entries and for the drop-in hook ``certhook install-hook``
puts in place. A process killed mid-write leaves only ``.tmp-PID-RANDOM``
in the directory, never a truncated file under the final name.
"""

from __future__ import annotations

import errno
import os

from certhook.errors import LocalError

__all__ = ["TEMP_PREFIX", "why", "write_atomic"]

TEMP_PREFIX = ".tmp-"  # then the writer's pid: a reader can tell when it died


def why(exc: OSError) -> str:
    """The reason for an OS error, in a word or two; ENOSPC is ``disk full``."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk full"
    return exc.strerror or str(exc)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename stands
    finally:
        os.close(fd)


def write_atomic(directory: str, name: str, data: bytes, mode: int = 0o600) -> str:
    """Write ``directory/name`` so that it is either absent or whole.

    Raises :class:`LocalError` with one line naming the directory (``disk
    full`` for ENOSPC); the temp file is removed on failure.
    """
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}")
    final = os.path.join(directory, name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except OSError as exc:
        raise LocalError(f"cannot write to {directory}: {why(exc)}") from None
    try:
        try:
            os.fchmod(fd, mode)  # the mode asked for, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise LocalError(f"cannot write to {directory}: {why(exc)}") from None
    _fsync_dir(directory)
    return final
