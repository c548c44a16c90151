"""The spool: submissions waiting for the audit server, one file each.

A submission that could not be delivered is written here and delivered by
the next command that submits, or by ``certhook flush``. It is deleted only
after the server answered ``ok``. The rules that make it lose nothing:

- **Atomic writes.** A file is written to ``.tmp-PID-RANDOM`` in the spool
  directory, fsynced, renamed to its final name, and the directory is
  fsynced. A process killed mid-write leaves only a ``.tmp-*`` file, which
  readers ignore and a later run removes once its writer is gone.
- **One id for life.** The request's ``id`` is chosen when it is made and
  kept in the file, so every retry carries it and the server counts a
  resubmission once.
- **No key.** The API key is added when sending; a spool file holds the
  request without it.
- **One sender at a time.** Delivering the spool takes ``flock`` on
  ``.lock``, so two flushes never send the same file twice.
- **Nothing silently dropped.** A file the server refused as ``syntax``
  moves to ``rejected/``. A file that cannot be read as an entry (not JSON,
  nested too deeply, over 64 KiB, wrong types, unreadable) moves to
  ``corrupt/``, with one warning naming it: one bad file never stops the
  others or a new submission (issue 9.6).

Files are ``MILLISECONDS-ID.json`` (``{"id", "created", "attempts",
"last_error", "request": <the HTTPS JSON body>}``) or, written by the bash
drop-in, ``MILLISECONDS-ID.line`` holding one request line without its key.
"""

from __future__ import annotations

import os
import time

from certhook.errors import LocalError, ParseError

# certhook.client.files (atomic writes, error wording) is imported where a
# file is written or an error worded: a delivery that succeeds needs neither,
# and the certbot hook's start-up is a product figure (bench/hook.py).

TYPE_CHECKING = False
if TYPE_CHECKING:
    from certhook.protocol import Request

__all__ = ["Entry", "Spool"]

REJECTED = "rejected"
CORRUPT = "corrupt"
_MAX_ENTRY = 64 * 1024  # a spooled request is under 2 KiB; anything past this is not one
_LOCK = ".lock"
_JOURNAL = ".delivered"
_STALE_TEMP = 3600.0  # a temp file this old is abandoned, whoever wrote it
_JOURNAL_MAX = 64 * 1024


class Entry:
    """One spooled submission. ``request`` carries no API key."""

    __slots__ = ("attempts", "created", "last_error", "path", "request")

    def __init__(self, path: str, request: Request, created: float, attempts: int = 0,
                 last_error: str | None = None) -> None:
        self.path = path
        self.request = request
        self.created = created
        self.attempts = attempts
        self.last_error = last_error

    def __repr__(self) -> str:
        return f"Entry({os.path.basename(self.path)!r}, attempts={self.attempts})"

    def to_bytes(self) -> bytes:
        import json

        return json.dumps({
            "id": self.request.id,
            "created": self.created,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "request": self.request.to_json(),
        }, indent=1).encode("ascii") + b"\n"


def _created_from_name(name: str) -> float:
    head = name.split("-", 1)[0]
    return int(head) / 1000 if head.isdigit() else 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class Spool:
    """The spool directory. Creating the object touches nothing on disk."""

    _last_created = 0.0  # keeps the order of submissions spooled in one millisecond

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"Spool({self.directory!r})"

    # -- listing -----------------------------------------------------------

    def names(self) -> list[str]:
        try:
            with os.scandir(self.directory) as entries:
                return sorted(
                    entry.name for entry in entries
                    if not entry.name.startswith(".")
                    and entry.name.endswith((".json", ".line"))
                    and entry.is_file()
                )
        except FileNotFoundError:
            return []
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot read the spool {self.directory}: {why(exc)}") from None

    def has_pending(self) -> bool:
        """Whether any submission waits (one ``scandir``, nothing parsed)."""
        return bool(self.names())

    def pending(self, quarantine: bool = True) -> tuple[list[Entry], list[str]]:
        """The waiting submissions, oldest first, and warnings about files
        that no longer parse (they are moved to ``rejected/``). Without
        ``quarantine``, only a look: nothing is moved or cleaned."""
        entries: list[Entry] = []
        warnings: list[str] = []
        if quarantine:
            self.clean_temp()
        for name in self.names():
            path = os.path.join(self.directory, name)
            try:
                entries.append(self._load(path, name))
            except FileNotFoundError:
                continue  # delivered by someone else meanwhile
            except Exception as exc:  # whatever a file holds, it must not stop the others
                if not quarantine:
                    continue
                reason = _reason(exc)
                try:
                    moved = self._move_aside(path, name)
                    warnings.append(f"spool file {name} is unreadable ({reason});"
                                    f" moved to {moved}")
                except LocalError as move_exc:
                    warnings.append(f"spool file {path} is unreadable ({reason}): {move_exc}")
        entries.sort(key=lambda e: (e.created, e.path))  # names hold milliseconds only
        return entries, warnings

    def _load(self, path: str, name: str) -> Entry:
        with open(path, "rb") as stream:
            data = stream.read(_MAX_ENTRY + 1)
        if len(data) > _MAX_ENTRY:
            raise ParseError(f"over {_MAX_ENTRY // 1024} KiB", path)
        if name.endswith(".line"):
            from certhook.protocol import parse_request

            request = parse_request(data.strip(), path)
            if request.apikey is not None:
                request = _without_key(request)
            if request.id is None:
                raise ParseError("request line has no id", path)
            return Entry(path, request, _created_from_name(name))
        import json

        from certhook.protocol import Request

        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ParseError("not JSON", path) from None
        except RecursionError:  # '[' * 60000
            raise ParseError("JSON nested too deeply", path) from None
        if not isinstance(doc, dict):
            raise ParseError("not a JSON object", path)
        request = Request.from_json(doc.get("request"), None, path)
        if request.id is None:
            raise ParseError("request has no id", path)
        created = doc.get("created")
        attempts = doc.get("attempts")
        last_error = doc.get("last_error")
        return Entry(
            path, request,
            float(created) if isinstance(created, (int, float)) else _created_from_name(name),
            attempts if isinstance(attempts, int) else 0,
            last_error if isinstance(last_error, str) else None,
        )

    def clean_temp(self) -> None:
        """Remove temp files whose writer died (or that are over an hour old)."""
        from certhook.client.files import TEMP_PREFIX

        try:
            names = [n for n in os.listdir(self.directory) if n.startswith(TEMP_PREFIX)]
        except OSError:
            return
        now = time.time()
        for name in names:
            path = os.path.join(self.directory, name)
            pid_text = name[len(TEMP_PREFIX):].split("-", 1)[0]
            try:
                stale = now - os.stat(path).st_mtime > _STALE_TEMP
            except OSError:
                continue
            if stale or (pid_text.isdigit() and not _pid_alive(int(pid_text))):
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # -- writing -----------------------------------------------------------

    def _ensure_dir(self) -> None:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot create the spool {self.directory}: {why(exc)}") from None

    def add(self, request: Request, last_error: str | None = None) -> Entry:
        """Spool a new submission (its ``id`` set, its key dropped)."""
        from certhook.client.files import write_atomic

        if request.id is None:
            raise ValueError("a spooled request needs an id")
        request = _without_key(request)
        self._ensure_dir()
        created = Spool._last_created = max(time.time(), Spool._last_created + 1e-6)
        name = f"{int(created * 1000):013d}-{request.id}.json"
        entry = Entry(os.path.join(self.directory, name), request, created, 1, last_error)
        write_atomic(self.directory, name, entry.to_bytes())
        return entry

    def update(self, entry: Entry, last_error: str | None) -> None:
        """Count one more failed attempt (best effort: the entry stays either way)."""
        from certhook.client.files import write_atomic

        entry.attempts += 1
        entry.last_error = last_error
        stem = os.path.basename(entry.path).rsplit(".", 1)[0]
        try:
            path = write_atomic(self.directory, stem + ".json", entry.to_bytes())
        except LocalError:
            return
        if path != entry.path:  # a bash .line entry, now a .json one
            self._unlink(entry.path)
            entry.path = path

    def remove(self, entry: Entry) -> None:
        """Forget a delivered submission."""
        self._unlink(entry.path)

    def reject(self, request: Request, reason: str, entry: Entry | None = None) -> str:
        """Keep a submission the server refused in ``rejected/``; returns its path."""
        from certhook.client.files import write_atomic

        if entry is None:
            created = time.time()
            name = f"{int(created * 1000):013d}-{request.id}.json"
            entry = Entry(os.path.join(self.directory, name), _without_key(request), created, 1)
        entry.last_error = reason
        directory = self._rejected_dir()
        name = os.path.basename(entry.path).rsplit(".", 1)[0] + ".json"
        path = write_atomic(directory, name, entry.to_bytes())
        if os.path.dirname(entry.path) == self.directory:
            self._unlink(entry.path)
        return path

    def _rejected_dir(self) -> str:
        directory = os.path.join(self.directory, REJECTED)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot create {directory}: {why(exc)}") from None
        return directory

    def _move_aside(self, path: str, name: str) -> str:
        directory = os.path.join(self.directory, CORRUPT)
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot create {directory}: {why(exc)}") from None
        target = os.path.join(directory, name)
        try:
            os.replace(path, target)
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot move it to {target}: {why(exc)}") from None
        return target

    @staticmethod
    def _unlink(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            from certhook.client.files import why

            raise LocalError(f"cannot remove {path}: {why(exc)}") from None

    # -- locking -----------------------------------------------------------

    def lock(self, wait: float = 0.0) -> bool:
        """Take the spool's delivery lock, waiting up to ``wait`` seconds.

        False if another process holds it (or the spool cannot be created:
        then there is nothing to deliver either).
        """
        import fcntl

        if self._lock_fd is not None:
            return True
        try:
            self._ensure_dir()
            fd = os.open(os.path.join(self.directory, _LOCK),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except (OSError, LocalError):
            return False
        end = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                if time.monotonic() >= end:
                    os.close(fd)
                    return False
                time.sleep(0.05)
                continue
            self._lock_fd = fd
            return True

    def unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, None
        if fd is not None:
            os.close(fd)  # closing releases the flock

    # -- what was delivered ------------------------------------------------

    def delivered(self) -> set[str]:
        """Keys recorded by :meth:`remember` (``deployed LINEAGE FINGERPRINT`` ...)."""
        try:
            # Written as ASCII; read as UTF-8, whose codec is loaded at start-up
            # (naming "ascii" would import encodings.ascii on every hook).
            with open(os.path.join(self.directory, _JOURNAL), encoding="utf-8",
                      errors="replace") as stream:
                text = stream.read(4 * _JOURNAL_MAX)  # a journal is kept under 64 KiB
            return {line.split(" ", 1)[1] for line in text.splitlines() if " " in line}
        except OSError:
            return set()

    def remember(self, keys: list[str]) -> None:
        """Note delivered submissions, so that a second hook does not resend them.

        Best effort: a journal that cannot be written only costs a duplicate.
        """
        if not keys:
            return
        path = os.path.join(self.directory, _JOURNAL)
        stamp = int(time.time())
        text = "".join(f"{stamp} {key}\n" for key in keys)
        try:
            self._ensure_dir()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, text.encode("ascii", "replace"))
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > _JOURNAL_MAX:
                from certhook.client.files import write_atomic

                with open(path, "rb") as stream:
                    lines = stream.read().splitlines(keepends=True)
                write_atomic(self.directory, _JOURNAL, b"".join(lines[len(lines) // 2:]))
        except (OSError, LocalError):
            pass


def _reason(exc: BaseException) -> str:
    """Why a spool file could not be loaded, in a few words."""
    if isinstance(exc, ParseError):
        return exc.reason
    if isinstance(exc, OSError):
        from certhook.client.files import why

        return why(exc)
    return f"{type(exc).__name__}: {exc}"[:200]


def _without_key(request: Request) -> Request:
    if request.apikey is None:
        return request
    return request.replace(apikey=None)
