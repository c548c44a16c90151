"""XMPP STARTTLS (RFC 6120 section 5): stream header, features, ``<starttls/>``, ``<proceed/>``.

No XML parser meets the server: a hostile stream could make one expand
entities or build a tree without end, and the stdlib has no defused one.
What is needed is a handful of tags, so a small incremental scanner cuts the
stream into tags, each bounded in length, resolves namespace prefixes, and
skips the character data between them. RFC 6120 section 11.1 forbids the
constructs it refuses: comments, processing instructions (the XML
declaration apart), DTDs and CDATA.
"""

from __future__ import annotations

import re

from certhook.probe.starttls_base import (
    MAX_LINE,
    MAX_REPLY_BYTES,
    MAX_REPLY_LINES,
    Dialogue,
    ProtocolRow,
    show,
)

__all__ = ["XmppDialogue"]

# RFC 6120 section 4.8.1: the stream namespace.
_STREAMS = "http://etherx.jabber.org/streams"
# RFC 6120 section 4.9.3: stream error conditions.
_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
_MAX_DEPTH = 32

# From "<" to the ">" that is not inside a quoted attribute value (XML 1.0
# section 3.1 allows ">" there). The alternatives start with distinct
# characters, so the scan is linear.
_TAG_END = re.compile(rb"<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_NAME = rb"[A-Za-z_][A-Za-z0-9_.:-]*"
_TAG = re.compile(
    rb"<(/?)(" + _NAME + rb")((?:\s+" + _NAME + rb"\s*=\s*(?:\"[^\"<]*\"|'[^'<]*'))*)\s*(/?)>\Z"
)
_ATTR = re.compile(rb"(" + _NAME + rb")\s*=\s*(?:\"([^\"<]*)\"|'([^'<]*)')")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&", "&apos;": "'", "&quot;": '"'}


def _unescape(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return re.sub(r"&(?:lt|gt|amp|apos|quot);", lambda m: _ENTITIES[m.group(0)], text)


def _quote(value: str) -> str:
    for char, entity in (("&", "&amp;"), ("<", "&lt;"), ("'", "&apos;"), ('"', "&quot;")):
        value = value.replace(char, entity)
    return value


# An element as the dialogue sees it: (namespace, local name).
_Name = tuple[str, str]


class XmppDialogue(Dialogue):
    """XMPP client (``jabber:client``) or server-to-server (``jabber:server``) streams.

    From the row: ``hello`` is the stream's default namespace,
    ``capability`` the namespace of ``<starttls/>``, ``command`` the
    ``<starttls/>`` element, ``success`` the local name ``proceed``.
    """

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self._buf = b""
        # Open elements: name and the prefix -> namespace map in scope.
        self._stack: list[tuple[_Name, dict[str, str]]] = []
        self._step = "open"
        self._offered = False
        self._tags = 0
        self._bytes = 0
        self._tls = (protocol.capability or b"").decode()
        self._sent_now = False  # <starttls/> went out during this feed()

    def initial(self) -> bytes:
        # RFC 6120 section 4.7: "to" names the server, version "1.0" asks
        # for stream features (4.7.5); 4.8.2: the default namespace.
        namespace = (self.protocol.hello or b"").decode()
        return (
            "<?xml version='1.0'?>"
            f"<stream:stream xmlns='{namespace}' xmlns:stream='{_STREAMS}'"
            f" to='{_quote(self.server_name)}' version='1.0'>"
        ).encode()

    def _feed(self, data: bytes) -> bytes:
        self._buf += data
        out = b""
        while not self.done:
            tag = self._next_tag()
            if tag is None:
                break
            self._sent_now = bool(out)
            out += self._tag(tag)
        return out

    def _next_tag(self) -> bytes | None:
        """The next tag, character data before it dropped, or ``None``."""
        while True:
            start = self._buf.find(b"<")
            skipped = len(self._buf) if start < 0 else start
            self._buf = self._buf[skipped:]
            self._count(skipped, 0)
            if len(self._buf) < 2:
                return None
            if self._buf.startswith(b"<!"):
                self.fail(f"comment, DTD or CDATA in the stream: {show(self._buf[:40])}")
            if not self._buf.startswith(b"<?"):
                match = _TAG_END.match(self._buf, 0, MAX_LINE)
                if match is not None:
                    self._buf = self._buf[match.end() :]
                    self._count(match.end(), 1)
                    return match.group(0)
                break
            end = self._buf.find(b"?>", 0, MAX_LINE)
            if end < 0:
                break
            # Only the XML declaration, before the stream opens.
            if self._stack or not self._buf.startswith(b"<?xml "):
                self.fail(f"processing instruction in the stream: {show(self._buf[:40])}")
            self._buf = self._buf[end + 2 :]
            self._count(end + 2, 1)
        if len(self._buf) >= MAX_LINE:
            self.fail(f"tag longer than {MAX_LINE} bytes")
        return None

    def _count(self, size: int, tags: int) -> None:
        self._bytes += size
        self._tags += tags
        if self._bytes > MAX_REPLY_BYTES:
            self.fail(f"stream features longer than {MAX_REPLY_BYTES} bytes")
        if self._tags > MAX_REPLY_LINES:
            self.fail(f"stream features of more than {MAX_REPLY_LINES} tags")

    def _tag(self, raw: bytes) -> bytes:
        match = _TAG.match(raw)
        if match is None:
            self.fail(f"malformed tag {show(raw)}")
        closing, qname, attrs, empty = match.groups()
        if closing:
            if empty or attrs or not self._stack:
                self.fail(f"malformed tag {show(raw)}")
            name, scope = self._stack.pop()
            if self._resolve(qname.decode(), scope) != name:
                self.fail(f"end tag {show(raw)} does not match its start")
            return self._end(name, len(self._stack))
        scope = dict(self._stack[-1][1]) if self._stack else {}
        values: dict[str, str] = {}
        for attr in _ATTR.finditer(attrs):
            key, value = attr.group(1).decode(), _unescape(attr.group(2) or attr.group(3))
            values[key] = value
            if key == "xmlns":
                scope[""] = value
            elif key.startswith("xmlns:"):
                scope[key[6:]] = value
        name = self._resolve(qname.decode(), scope)
        depth = len(self._stack)
        if depth >= _MAX_DEPTH:
            self.fail(f"elements nested deeper than {_MAX_DEPTH}")
        self._stack.append((name, scope))
        send = self._start(name, depth, raw)
        if empty and not self.done:
            self._stack.pop()
            send += self._end(name, depth)
        return send

    def _resolve(self, qname: str, scope: dict[str, str]) -> _Name:
        prefix, _, local = qname.rpartition(":")
        if prefix and prefix not in scope:
            self.fail(f"undeclared namespace prefix {prefix!r}")
        return scope.get(prefix, ""), local

    def _start(self, name: _Name, depth: int, raw: bytes) -> bytes:
        if depth == 0:
            # RFC 6120 section 4.2: the response stream header.
            if self._step != "open" or name != (_STREAMS, "stream"):
                self.fail(f"expected a stream header, got {show(raw)}")
            self._step = "features"
            return b""
        parent = self._stack[depth - 1][0]
        if parent == (_STREAMS, "error"):
            # RFC 6120 section 4.9.3: the first child names the condition.
            self.fail(f"stream error: {name[1]}")
        if depth == 1 and name == (self._tls, "failure"):
            # RFC 6120 section 5.4.2.2: the server refuses to start TLS.
            self.fail(f"STARTTLS refused: {show(raw)}")
        if self._step == "proceed" and depth == 1 and name[0] != _STREAMS:
            if name != (self._tls, self.protocol.success[0].decode()):
                self.fail(f"unexpected element {show(raw)}")
        if parent == (_STREAMS, "features") and name == (self._tls, "starttls"):
            self._offered = True  # RFC 6120 section 5.4.1
        return b""

    def _end(self, name: _Name, depth: int) -> bytes:
        if depth == 0:
            self.fail("server closed the stream")
        if depth != 1:
            return b""
        if name == (_STREAMS, "error"):
            self.fail("stream error without a condition")
        if self._step == "features" and name == (_STREAMS, "features"):
            if not self._offered:
                self.fail("STARTTLS not offered")
            # RFC 6120 section 5.4.2.1: the initiating entity asks.
            self._step = "proceed"
            self._bytes = self._tags = 0
            return self.protocol.command
        if self._step == "proceed" and name[0] == self._tls:
            # RFC 6120 section 5.4.2.3: <proceed/>, and then nothing but TLS;
            # a <proceed/> that came with the features answers no request.
            if self._sent_now:
                self.fail("reply before our command was sent")
            self.go_ahead(len(self._buf))
        return b""
