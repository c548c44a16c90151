"""The parts every STARTTLS dialogue shares: the table row, the base class, the limits.

A dialogue is sans-IO (the h11 model): it is fed the bytes the server sent
and answers with the bytes to send back. It never touches a socket; the pump
is :func:`certhook.probe.starttls.negotiate`.

Every dialogue keeps the same promises, which the tests check with
Hypothesis: any bytes fed give bytes to send (maybe none) or
:class:`~certhook.errors.ProtocolError`, never another exception; nothing it
buffers grows past the limits below; and once the server has said "go
ahead", any further byte from it is an error. A server (or a man in the
middle) that sends data right behind its go-ahead would have it read as if it
had come through TLS: the client-side twin of CVE-2011-0411, the STARTTLS
response injection of Poddebniak et al., "Why TLS is better without
STARTTLS" (USENIX Security 2021).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, NoReturn

from certhook.errors import ProtocolError

__all__ = [
    "MAX_DIALOGUE_BYTES",
    "MAX_LINE",
    "MAX_REPLY_BYTES",
    "MAX_REPLY_LINES",
    "Dialogue",
    "LineReader",
    "LiteralLines",
    "ProtocolRow",
    "show",
]

#: The longest line a server may send, terminator included. SMTP allows
#: 512 octets per reply line (RFC 5321 section 4.5.3.1.5); IMAP lines carry
#: long capability lists, so allow some room.
MAX_LINE = 4096
#: The largest single reply (a multi-line SMTP/FTP reply, an IMAP response
#: with its literals, XMPP stream features, an LDAP message).
MAX_REPLY_BYTES = 64 * 1024
#: The most lines (or XML tags) in one reply.
MAX_REPLY_LINES = 512
#: Everything the server may send before its go-ahead, all replies together.
MAX_DIALOGUE_BYTES = 256 * 1024

# How much of a server's reply an error message quotes.
_SHOW_CHARS = 200


@dataclass(frozen=True)
class ProtocolRow:
    """One row of the protocol table: the facts a dialogue is built from.

    ``greeting``, ``success`` and ``capability`` are reply prefixes or
    keywords for the text protocols; the binary ones document in their row
    what they put there. ``hello`` is the command that lists capabilities
    (``EHLO``, ``CAPA``...), ``None`` when the dialogue does not ask.
    """

    name: str
    port: int | None
    client_first: bool
    greeting: tuple[bytes, ...]
    hello: bytes | None
    capability: bytes | None
    command: bytes
    success: tuple[bytes, ...]
    reference: str
    dialogue: Callable[[ProtocolRow, str, str], Dialogue]


class Dialogue:
    """A STARTTLS exchange with one server, fed bytes, answering bytes.

    Call :meth:`initial` once after connecting and send what it returns,
    then :meth:`feed` every chunk received and send what it returns, until
    :attr:`done` is true: the server agreed, and the TLS handshake may start
    on the same connection. A failure reply, malformed data or a limit
    exceeded raises :class:`~certhook.errors.ProtocolError` (without a
    source: the pump adds ``host:port``); the dialogue is then dead.
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        self.protocol = protocol
        self.server_name = server_name
        self.client_name = client_name
        #: True once the server agreed to start TLS.
        self.done = False
        self._received = 0
        self._failure: ProtocolError | None = None

    def initial(self) -> bytes:
        """The bytes to send right after connecting (``b""`` if the server speaks first)."""
        return self.protocol.command if self.protocol.client_first else b""

    def feed(self, data: bytes) -> bytes:
        """Take bytes received from the server; return the bytes to send next."""
        if self._failure is not None:
            raise self._failure
        if not data:
            return b""
        try:
            if self.done:
                self.fail(f"{len(data)} bytes after the go-ahead, before TLS started")
            self._received += len(data)
            if self._received > MAX_DIALOGUE_BYTES:
                self.fail(f"more than {MAX_DIALOGUE_BYTES} bytes before the go-ahead")
            return self._feed(data)
        except ProtocolError as exc:
            self._failure = exc
            raise

    def _feed(self, data: bytes) -> bytes:
        raise NotImplementedError

    def fail(self, message: str) -> NoReturn:
        """Raise the dialogue's :class:`ProtocolError`, prefixed with the protocol."""
        raise ProtocolError(f"{self.protocol.name}: {message}")

    def go_ahead(self, leftover: int) -> None:
        """Mark the dialogue done; ``leftover`` bytes still buffered are injection."""
        if leftover:
            self.fail(f"{leftover} bytes after the go-ahead, before TLS started")
        self.done = True


def show(reply: bytes) -> str:
    """A server's reply for an error message: one line, printable, trimmed."""
    text = reply.decode("ascii", "backslashreplace")
    text = " ".join(part for part in re.split(r"[\r\n]+", text) if part)
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text).strip()
    if len(text) > _SHOW_CHARS:
        text = text[: _SHOW_CHARS - 3] + "..."
    return f"'{text}'" if text else "(empty)"


class LineReader:
    """A receive buffer cut into lines, with the line and reply limits.

    Lines end with CRLF (every protocol here says so); a bare LF is taken
    too, as servers and test peers send one. :meth:`line` returns a line
    without its terminator, or ``None`` until one is complete. The counters
    of the current reply are reset by :meth:`new_reply`.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._buf = bytearray()
        self._lines = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._buf)

    def add(self, data: bytes) -> None:
        self._buf += data

    def new_reply(self) -> None:
        self._lines = 0
        self._bytes = 0

    def _count(self, size: int, lines: int) -> None:
        self._bytes += size
        self._lines += lines
        if self._bytes > MAX_REPLY_BYTES:
            raise ProtocolError(f"{self._what}: reply longer than {MAX_REPLY_BYTES} bytes")
        if self._lines > MAX_REPLY_LINES:
            raise ProtocolError(f"{self._what}: reply of more than {MAX_REPLY_LINES} lines")

    def line(self) -> bytes | None:
        end = self._buf.find(b"\n", 0, MAX_LINE)
        if end < 0:
            if len(self._buf) >= MAX_LINE:
                raise ProtocolError(f"{self._what}: line longer than {MAX_LINE} bytes")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._count(end + 1, 1)
        return line[:-1] if line.endswith(b"\r") else line

    def take(self, size: int) -> bytes | None:
        """Exactly ``size`` raw bytes (an IMAP or ManageSieve literal), or ``None``."""
        if self._bytes + size > MAX_REPLY_BYTES:
            raise ProtocolError(f"{self._what}: literal of {size} bytes is too long")
        if len(self._buf) < size:
            return None
        raw = bytes(self._buf[:size])
        del self._buf[:size]
        self._count(size, 0)
        return raw


# A line ending in a literal announcement: {n} (RFC 3501 section 4.3,
# RFC 5804 section 4 "literal-s2c"); the "+" form is client-to-server only
# (RFC 7888), accepted anyway.
_LITERAL = re.compile(rb"\{([0-9]{1,10})\+?\}$")


class LiteralLines:
    """Logical lines of IMAP and ManageSieve: a line plus the literals it announces.

    A line ending in ``{n}`` is followed by exactly n raw octets and then the
    rest of the line. The literal is bounded by :data:`MAX_REPLY_BYTES`
    before a byte of it is buffered. Returns the parts of the logical line:
    text pieces with the literal contents between them.
    """

    def __init__(self, reader: LineReader) -> None:
        self._reader = reader
        self._parts: list[bytes] = []
        self._literal: int | None = None

    def next(self) -> list[bytes] | None:
        while True:
            if self._literal is not None:
                raw = self._reader.take(self._literal)
                if raw is None:
                    return None
                self._parts.append(raw)
                self._literal = None
            line = self._reader.line()
            if line is None:
                return None
            match = _LITERAL.search(line)
            if match is None:
                parts, self._parts = [*self._parts, line], []
                return parts
            self._parts.append(line[: match.start()])
            # Checked against the reply limit by take(), before it is buffered.
            self._literal = int(match.group(1))
