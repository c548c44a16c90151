"""The one error hierarchy of certhook.

Every error certhook raises on purpose derives from :class:`CerthookError`.
OS errors and socket timeouts are translated once, where the I/O happens,
into :class:`LocalError` (this machine: files, permissions, disk) or
:class:`RemoteError` (the peer: refused, reset, timed out, spoke nonsense).
Messages are one line and name the file or peer they are about; they never
carry an API key.
"""

from __future__ import annotations

__all__ = [
    "CerthookError",
    "LocalError",
    "ParseError",
    "ProtocolError",
    "RemoteError",
    "RemoteTimeout",
    "StoreConflict",
    "StoreUnavailable",
    "UsageError",
]


class CerthookError(Exception):
    """Base class of every error certhook raises on purpose."""


class ParseError(CerthookError, ValueError):
    """Input that does not parse: a certificate, a conf, a log, a reply.

    ``source`` names where the input came from (a path, ``host:port``, or a
    short description); it is prefixed to the message.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source else message)


class LocalError(CerthookError):
    """A fault on this machine: missing file, permissions, disk full."""


class StoreConflict(LocalError):
    """Two writers' transactions crossed (PostgreSQL: a deadlock, a serialization
    failure, SQLSTATE class 40): nothing was written, and running it again is safe."""


class StoreUnavailable(LocalError):
    """The server's database cannot be reached (PostgreSQL down, connection lost).

    The message names the database by its redacted URL, never its password.
    """


class RemoteError(CerthookError):
    """A fault of the peer: refused, reset, closed early, bad reply."""


class RemoteTimeout(RemoteError):
    """The peer did not answer within the time allowed."""


class ProtocolError(RemoteError, ParseError):
    """The peer answered, but not in the protocol we speak."""

    def __init__(self, message: str, source: str | None = None) -> None:
        ParseError.__init__(self, message, source)


class UsageError(CerthookError):
    """A command was called with options that cannot work together."""
