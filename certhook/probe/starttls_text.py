"""Lock-step line protocols: SMTP, LMTP, FTP, NNTP (reply codes) and POP3.

The server speaks first; then each command gets exactly one reply. A reply
is complete only when its last line is: ``250-`` lines continue an SMTP
reply whatever the recv() boundaries, so nothing here assumes that one
chunk received is one reply. Since the server may not speak out of turn,
data behind a complete reply, before our next command went out, is an
error.
"""

from __future__ import annotations

import re

from certhook.probe.starttls_base import Dialogue, LineReader, ProtocolRow, show

__all__ = ["CodeDialogue", "Pop3Dialogue"]

# First line of a reply: three digits, then "-" (more lines follow), a space
# or nothing (the last line). RFC 5321 section 4.2 (SMTP and LMTP), RFC 959
# section 4.2 (FTP), RFC 3977 section 3.2 (NNTP).
_FIRST = re.compile(rb"([1-5][0-9][0-9])([ -]|$)")


class CodeDialogue(Dialogue):
    """SMTP, submission, LMTP, FTP and NNTP: greeting, optional hello, command.

    From the row: ``greeting`` (accepted codes), ``hello`` (``EHLO`` or
    ``LHLO``, sent with our name, whose 250 reply must list
    ``capability``), ``command`` and ``success`` (the go-ahead code).
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._reader = LineReader(protocol.name)
        self._code: bytes | None = None
        self._lines: list[bytes] = []
        self._step = "greeting"

    def _reply(self) -> tuple[bytes, list[bytes]] | None:
        """The next complete reply, as (code, lines), or ``None``."""
        while True:
            line = self._reader.line()
            if line is None:
                return None
            if self._code is None:
                match = _FIRST.match(line)
                if match is None:
                    self.fail(f"malformed reply {show(line)}")
                self._code, self._lines = match.group(1), [line]
                last = match.group(2) != b"-"
            else:
                self._lines.append(line)
                # RFC 959 section 4.2: a multi-line reply ends with a line
                # starting with the same code and a space; lines between may
                # be anything. SMTP's stricter "250-" on every line (RFC 5321
                # section 4.2.1) is a special case of it.
                last = line[:3] == self._code and line[3:4] in (b" ", b"")
            if last:
                code, lines = self._code, self._lines
                self._code, self._lines = None, []
                self._reader.new_reply()
                return code, lines

    def _feed(self, data: bytes) -> bytes:
        self._reader.add(data)
        while True:
            reply = self._reply()
            if reply is None:
                return b""
            code, lines = reply
            if code.startswith(b"1"):
                # 1yz: a preliminary reply, the real one follows: FTP's "120
                # ready in nnn minutes" (RFC 959 section 5.4), NNTP's
                # informative 1xx (RFC 3977 section 3.2.1).
                continue
            send = self._answer(code, lines)
            if self.done:
                return b""
            if len(self._reader):
                self.fail(f"server sent data behind {show(lines[-1])}, before our command")
            return send

    def _answer(self, code: bytes, lines: list[bytes]) -> bytes:
        row = self.protocol
        if self._step == "greeting":
            if code not in row.greeting:
                self.fail(f"unexpected greeting {show(b' '.join(lines))}")
            if row.hello is None:
                return self._starttls()
            self._step = "hello"
            return row.hello + b" " + self.client_name.encode("ascii") + b"\r\n"
        if self._step == "hello":
            assert row.hello is not None and row.capability is not None
            # RFC 5321 section 4.1.1.1: EHLO succeeds with 250 (LHLO too,
            # RFC 2033 section 4.1); each line after the first names one
            # extension, a keyword compared without regard to case (2.4).
            if code != b"250":
                self.fail(f"{row.hello.decode()} refused: {show(b' '.join(lines))}")
            keywords = {line[4:].split(b" ", 1)[0].upper() for line in lines[1:]}
            if row.capability not in keywords:
                self.fail(f"{row.capability.decode()} not offered")
            return self._starttls()
        # The go-ahead: 220 for SMTP (RFC 3207 section 4), 234 for FTP
        # (RFC 4217 section 4), 382 for NNTP (RFC 4642 section 2.2.1).
        if code not in row.success:
            self.fail(f"{row.command.decode()} refused: {show(b' '.join(lines))}")
        self.go_ahead(len(self._reader))
        return b""

    def _starttls(self) -> bytes:
        self._step = "starttls"
        return self.protocol.command + b"\r\n"


class Pop3Dialogue(Dialogue):
    """POP3: ``+OK`` greeting, ``CAPA`` (RFC 2449), ``STLS`` (RFC 2595 section 4).

    A server without CAPA answers it with ``-ERR``; STLS is then tried
    anyway. A CAPA listing without ``STLS`` is "not offered".
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._reader = LineReader(protocol.name)
        self._step = "greeting"
        self._listing: list[bytes] | None = None

    def _feed(self, data: bytes) -> bytes:
        self._reader.add(data)
        while True:
            line = self._reader.line()
            if line is None:
                return b""
            send = self._line(line)
            if self.done:
                return b""
            if send is not None:
                if len(self._reader):
                    self.fail(f"server sent data behind {show(line)}, before our command")
                self._reader.new_reply()
                return send

    def _line(self, line: bytes) -> bytes | None:
        row = self.protocol
        if self._listing is not None:
            # RFC 1939 section 3: a multi-line response ends with a line of a
            # single "."; a line starting with "." has it doubled.
            if line != b".":
                self._listing.append(line[1:] if line.startswith(b".") else line)
                return None
            names = {entry.split(b" ", 1)[0].upper() for entry in self._listing}
            assert row.capability is not None
            if row.capability not in names:
                self.fail(f"{row.capability.decode()} not offered")
            self._listing = None
            return self._stls()
        # RFC 1939 section 3: status "+OK" or "-ERR", then a space or the end.
        status = line.split(b" ", 1)[0]
        if status not in (b"+OK", b"-ERR"):
            self.fail(f"malformed reply {show(line)}")
        if self._step == "greeting":
            if status not in row.greeting:
                self.fail(f"unexpected greeting {show(line)}")
            self._step = "capa"
            assert row.hello is not None
            return row.hello + b"\r\n"
        if self._step == "capa":
            if status == b"+OK":
                self._listing = []
                return None
            return self._stls()  # no CAPA (RFC 2449 is optional): try STLS anyway
        if status not in row.success:
            self.fail(f"{row.command.decode()} refused: {show(line)}")
        self.go_ahead(len(self._reader))
        return None

    def _stls(self) -> bytes:
        self._step = "stls"
        return self.protocol.command + b"\r\n"
