"""IMAP (RFC 3501, RFC 9051) and ManageSieve (RFC 5804): lines with literals.

Both may carry a literal, ``{n}`` at the end of a line and then n raw
octets, inside a server response (IMAP: any untagged response; ManageSieve:
any string). :class:`~certhook.probe.starttls_base.LiteralLines` reads them
bounded, so that a ``{999999999}`` neither confuses the line parsing nor
makes us buffer without end.
"""

from __future__ import annotations

import re

from certhook.probe.starttls_base import (
    Dialogue,
    LineReader,
    LiteralLines,
    ProtocolRow,
    show,
)

__all__ = ["ImapDialogue", "SieveDialogue"]

# RFC 3501 section 7.1: a status response may open with a response code;
# "[CAPABILITY ...]" in the greeting saves the CAPABILITY command.
_CAPABILITY_CODE = re.compile(rb"\[CAPABILITY ([^\]]*)\]", re.IGNORECASE)
# RFC 5804 section 4: quoted = DQUOTE *QUOTED-CHAR DQUOTE, "\" escapes.
_QUOTED = re.compile(rb'"((?:[^"\\]|\\.)*)"')


class ImapDialogue(Dialogue):
    """IMAP: ``* OK`` greeting, capabilities, ``a002 STARTTLS``, tagged ``OK``.

    RFC 3501 section 6.2.1: STARTTLS is valid only before authentication, so
    a ``* PREAUTH`` greeting is a failure, like ``* BYE``. Untagged
    responses may come at any time (section 2.2.2) and are skipped, but the
    tagged reply to a command must not arrive before the command was sent.
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._reader = LineReader(protocol.name)
        self._lines = LiteralLines(self._reader)
        self._step = "greeting"
        self._tag = b""
        self._caps: set[bytes] = set()

    def _feed(self, data: bytes) -> bytes:
        self._reader.add(data)
        out = b""
        while not self.done:
            parts = self._lines.next()
            if parts is None:
                break
            self._reader.new_reply()
            send = self._response(parts[0], sent_now=bool(out))
            if send:
                out += send
        return out

    def _command(self, command: bytes) -> bytes:
        self._tag = command.split(b" ", 1)[0]
        return command + b"\r\n"

    def _response(self, head: bytes, sent_now: bool) -> bytes:
        row = self.protocol
        tag, _, rest = head.partition(b" ")
        status, _, text = rest.partition(b" ")
        status = status.upper()
        if tag == b"*":
            if self._step == "greeting":
                return self._greeting(head, tag + b" " + status, text)
            if status == b"BYE":
                self.fail(f"server closes: {show(head)}")
            if status == b"CAPABILITY":
                self._caps.update(rest.upper().split()[1:])
            return b""
        if self._step == "greeting" or tag != self._tag:
            self.fail(f"unexpected response {show(head)}")
        if sent_now:
            self.fail(f"reply before our command was sent: {show(head)}")
        # RFC 3501 section 7.1: tagged OK, NO or BAD.
        if self._step == "capability":
            if status != b"OK":
                self.fail(f"{(row.hello or b'').decode()} refused: {show(head)}")
            return self._check()
        if tag + b" " + status not in row.success:
            self.fail(f"{row.command.decode()} refused: {show(head)}")
        self.go_ahead(len(self._reader))
        return b""

    def _greeting(self, head: bytes, status: bytes, text: bytes) -> bytes:
        # RFC 3501 section 7.1.1/7.1.4/7.1.5: "* OK", "* PREAUTH" or "* BYE".
        if status == b"* PREAUTH":
            self.fail(f"PREAUTH greeting, too late for STARTTLS: {show(head)}")
        if status not in self.protocol.greeting:
            self.fail(f"unexpected greeting {show(head)}")
        match = _CAPABILITY_CODE.match(text)
        if match is not None:
            self._caps.update(match.group(1).upper().split())
            return self._check()
        assert self.protocol.hello is not None
        self._step = "capability"
        return self._command(self.protocol.hello)

    def _check(self) -> bytes:
        capability = self.protocol.capability
        assert capability is not None
        if capability not in self._caps:
            self.fail(f"{capability.decode()} not offered")
        self._step = "starttls"
        return self._command(self.protocol.command)


def _first_token(parts: list[bytes]) -> bytes | None:
    """The string a ManageSieve line starts with, ``None`` if it is an atom."""
    head = parts[0]
    if head == b"" and len(parts) > 1:
        return parts[1]  # a literal string
    match = _QUOTED.match(head)
    return re.sub(rb"\\(.)", rb"\1", match.group(1)) if match else None


class SieveDialogue(Dialogue):
    """ManageSieve: capability lines then ``OK``, ``STARTTLS``, ``OK``.

    RFC 5804 section 1.7: the greeting is a capability listing, one string
    (and maybe a value) per line, capability names compared without regard
    to case, closed by an ``OK`` response; section 2.2: STARTTLS succeeds
    with ``OK``, fails with ``NO`` or ``BYE``.
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._reader = LineReader(protocol.name)
        self._lines = LiteralLines(self._reader)
        self._step = "greeting"
        self._caps: set[bytes] = set()

    def _feed(self, data: bytes) -> bytes:
        self._reader.add(data)
        while True:
            parts = self._lines.next()
            if parts is None:
                return b""
            send = self._line(parts)
            if self.done:
                return b""
            if send:
                if len(self._reader):
                    self.fail(f"server sent data behind {show(parts[-1])}, before our command")
                self._reader.new_reply()
                return send

    def _line(self, parts: list[bytes]) -> bytes:
        token = _first_token(parts)
        if token is not None:
            if self._step != "greeting":
                self.fail(f"unexpected response {show(b''.join(parts))}")
            self._caps.add(token.upper())
            return b""
        # RFC 5804 section 4: response = OK / NO / BYE, then space or end.
        status = parts[0].split(b" ", 1)[0].upper()
        if status not in (b"OK", b"NO", b"BYE"):
            self.fail(f"malformed response {show(b''.join(parts))}")
        row = self.protocol
        if self._step == "greeting":
            if status not in row.greeting:
                self.fail(f"unexpected greeting {show(b''.join(parts))}")
            assert row.capability is not None
            if row.capability not in self._caps:
                self.fail(f"{row.capability.decode()} not offered")
            self._step = "starttls"
            return row.command + b"\r\n"
        if status not in row.success:
            self.fail(f"{row.command.decode()} refused: {show(b''.join(parts))}")
        self.go_ahead(len(self._reader))
        return b""
