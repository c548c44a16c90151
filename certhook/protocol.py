"""The certhook line protocol, sans-IO: bytes in, requests and responses out.

One request per line, ASCII, at most :data:`MAX_LINE` bytes with its LF or
CRLF; the KeyChest form ``command add domain example.org apikey KEY`` is a
valid request. Every request gets one response line, ``ok ...`` or
``error CODE text``. The full specification is ``docs/protocol.md``; this
module is the one implementation of its grammar, used by the client and the
server alike. Nothing here touches a socket.
"""

from __future__ import annotations

from certhook.errors import ParseError
from certhook.names import MAX_RENEW_BEFORE

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_PORT",
    "ERROR_CODES",
    "EVENTS",
    "MAX_LINE",
    "LineBuffer",
    "Request",
    "Response",
    "parse_request",
    "parse_response",
]

DEFAULT_PORT = 10023
DEFAULT_HTTP_PORT = 8023
MAX_LINE = 1000  # bytes, including the line ending
MAX_DOMAINS = 100
EVENTS = frozenset({"deployed", "failed", "sync"})
VERBS = frozenset({"add", "ping"})
ERROR_CODES = frozenset({"syntax", "auth", "limit", "unavailable", "internal"})

# The grammar of values, checked with str methods and character sets rather
# than ``re``: the certbot hook encodes and checks a request on every renewal,
# and ``import re`` (with ``enum``) is ~6 ms of its start-up (bench/hook.py).
# Each check states the expression it implements; tests/test_protocol.py
# holds it to that expression (``re.fullmatch``) with hypothesis.
_LOWER_HEX = frozenset("0123456789abcdef")
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")
_ADDRESS_CHARS = _LOWER_HEX | frozenset(":.")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/@+=-")
_PROTOCOL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_LINE_BYTES = bytes(range(0x20, 0x7F))  # printable ASCII and space


def _is_domain(text: str) -> bool:
    r"""``(\*\.)?[a-z0-9_]([a-z0-9_.-]{0,251}[a-z0-9_.])?|[0-9a-f:.]{2,45}``: a host
    name, a wildcard name, or an IPv4/IPv6 literal (case is folded before)."""
    if 2 <= len(text) <= 45 and _ADDRESS_CHARS.issuperset(text):
        return True
    name = text[2:] if text.startswith("*.") else text
    return (0 < len(name) <= 253 and _NAME_CHARS.issuperset(name)
            and name[0] not in ".-" and name[-1] != "-")


def _is_token(text: str) -> bool:
    """``[A-Za-z0-9._:/@+=-]{1,128}``: lineage, id, client and apikey values."""
    return 0 < len(text) <= 128 and _TOKEN_CHARS.issuperset(text)


def _is_fingerprint(text: str) -> bool:
    """``[0-9a-f]{64}``: a SHA-256 digest in lower-case hex."""
    return len(text) == 64 and _LOWER_HEX.issuperset(text)


def _is_protocol(text: str) -> bool:
    """``[a-z0-9-]{1,20}``: ``tls`` or the name of a STARTTLS dialogue."""
    return 0 < len(text) <= 20 and _PROTOCOL_CHARS.issuperset(text)


def _is_acme_server(text: str) -> bool:
    r"""``https?://[\x21-\x7e]{1,240}``: the lineage's ACME directory URL, one word."""
    scheme = 8 if text.startswith("https://") else 7 if text.startswith("http://") else 0
    return bool(scheme) and scheme < len(text) <= scheme + 240 and _is_word(text)


def _renew_before(text: str) -> int | None:
    """``[0-9]{1,10}`` seconds, at most MAX_RENEW_BEFORE (100 years); None if not."""
    # ASCII digits only: str.isdigit() also says yes to other scripts' digits.
    if 0 < len(text) <= 10 and text.isascii() and text.isdigit():
        value = int(text)
        return value if value <= MAX_RENEW_BEFORE else None
    return None


def _is_word(text: str) -> bool:
    r"""``[\x21-\x7e]+``: one non-empty word of printable ASCII, no space."""
    return text.isascii() and text.isprintable() and text != "" and " " not in text


def _is_line(line: bytes) -> bool:
    r"""``[\x21-\x7e]+( [\x21-\x7e]+)*``: printable ASCII words, single spaces."""
    return (line != b"" and not line.translate(None, delete=_LINE_BYTES)
            and not line.startswith(b" ") and not line.endswith(b" ") and b"  " not in line)


class _Record:
    """A frozen record: equality, hash, repr and pickling over ``_fields``, as a
    frozen dataclass would have them. Not a dataclass: ``import dataclasses``
    pulls in ``inspect`` (~7 ms), and the certbot hook imports this module on
    every renewal (bench/hook.py). Fields named in ``_hidden`` stay out of repr.
    """

    __slots__: tuple[str, ...] = ()
    _fields: tuple[str, ...] = ()  # in order; __slots__ holds the same names
    _hidden: frozenset[str] = frozenset()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Record) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields
                          if name not in self._hidden)
        return f"{self.__class__.__name__}({shown})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        return self.__class__, self._values()


class Request(_Record):
    """One submission or command.

    ``ports`` and ``protocols`` pair up by position: the Nth ``protocol``
    names the dialogue for the Nth ``port``; a port without one is audited
    with the protocol its number implies. ``apikey`` is kept out of repr.
    """

    _fields = ("verb", "domains", "apikey", "ports", "protocols", "fingerprint", "lineage",
               "event", "id", "client", "acme_server", "renew_before")
    __slots__ = _fields
    _hidden = frozenset({"apikey"})
    verb: str
    domains: tuple[str, ...]
    apikey: str | None
    ports: tuple[int, ...]
    protocols: tuple[str, ...]
    fingerprint: str | None
    lineage: str | None
    event: str | None
    id: str | None
    client: str | None
    acme_server: str | None
    renew_before: int | None

    def __init__(
        self,
        verb: str = "add",
        domains: tuple[str, ...] = (),
        apikey: str | None = None,
        ports: tuple[int, ...] = (),
        protocols: tuple[str, ...] = (),
        fingerprint: str | None = None,
        lineage: str | None = None,
        event: str | None = None,
        id: str | None = None,
        client: str | None = None,
        acme_server: str | None = None,
        renew_before: int | None = None,
    ) -> None:
        for name, value in zip(self._fields, (verb, domains, apikey, ports, protocols,
                                              fingerprint, lineage, event, id, client,
                                              acme_server, renew_before)):
            object.__setattr__(self, name, value)

    def replace(self, **changes: Any) -> Request:
        """A copy with the given fields replaced (as ``dataclasses.replace``)."""
        values = {name: getattr(self, name) for name in self._fields}
        values.update(changes)
        return Request(**values)

    def encode(self) -> bytes:
        """The request as one CRLF-terminated line; ValueError if it cannot be one."""
        words = ["command", self.verb]
        words += [w for d in self.domains for w in ("domain", d)]
        words += [w for p in self.ports for w in ("port", str(p))]
        words += [w for p in self.protocols for w in ("protocol", p)]
        for key in ("fingerprint", "lineage", "event", "id", "client", "acme_server",
                    "renew_before", "apikey"):
            value = getattr(self, key)
            if value is not None:
                words += [key, str(value)]
        for word in words:
            if not _is_word(word):
                # The value is not echoed: it may be the key.
                raise ValueError("a request value is empty or has spaces or non-ASCII")
        line = " ".join(words).encode("ascii") + b"\r\n"
        if len(line) > MAX_LINE:
            raise ValueError(f"request of {len(line)} bytes is over the {MAX_LINE}-byte limit")
        return line

    def to_json(self) -> dict[str, Any]:
        """The JSON body of ``POST /api/v1/submissions`` (the key travels in a header)."""
        body: dict[str, Any] = {"domains": list(self.domains)}
        if self.ports:
            body["ports"] = list(self.ports)
        if self.protocols:
            body["protocols"] = list(self.protocols)
        for key in ("fingerprint", "lineage", "event", "id", "client", "acme_server",
                    "renew_before"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body

    @classmethod
    def from_json(cls, body: object, apikey: str | None, source: str) -> Request:
        """A submission from its JSON body, checked like a line; ParseError if bad."""
        if not isinstance(body, dict):
            raise ParseError("JSON body is not an object", source)
        words: list[str] = ["command", "add"]
        plural = {"domains": "domain", "ports": "port", "protocols": "protocol"}
        for key, value in body.items():
            if key in plural:
                if not isinstance(value, list):
                    raise ParseError(f"{key!r} is not a list", source)
                items = value
                key = plural[key]
            elif key in ("domain", "port", "protocol", "fingerprint", "lineage", "event",
                         "id", "client", "acme_server", "renew_before"):
                items = [value]
            else:
                continue  # unknown keys are ignored, as on the line
            for item in items:
                if isinstance(item, bool) or not isinstance(item, (str, int)):
                    raise ParseError(f"{key!r} has a value that is not a string", source)
                # str() of an int over 4,300 digits raises ValueError (CPython's
                # int_max_str_digits); no value of any key is that long.
                words += [key, item if isinstance(item, str) else
                          str(item) if -(10 ** 20) < item < 10 ** 20 else "-"]
        if apikey is not None:
            words += ["apikey", apikey]
        return _from_words(words, source)


class Response(_Record):
    """``ok`` with optional key/value pairs, or ``error CODE text``."""

    _fields = ("ok", "code", "text", "fields")
    __slots__ = _fields
    ok: bool
    code: str | None
    text: str
    fields: tuple[tuple[str, str], ...]

    def __init__(self, ok: bool, code: str | None = None, text: str = "",
                 fields: tuple[tuple[str, str], ...] = ()) -> None:
        for name, value in zip(self._fields, (ok, code, text, fields)):
            object.__setattr__(self, name, value)

    @classmethod
    def success(cls, **fields: str) -> Response:
        return cls(True, fields=tuple(fields.items()))

    @classmethod
    def error(cls, code: str, text: str) -> Response:
        return cls(False, code, text)

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.fields if k == key), None)

    def encode(self) -> bytes:
        if self.ok:
            words = ["ok"] + [w for kv in self.fields for w in kv]
        else:
            words = ["error", self.code or "internal", *self.text.split()]
        line = " ".join(words).encode("ascii", "replace")[: MAX_LINE - 2]
        return line + b"\r\n"


class LineBuffer:
    """Splits a byte stream into lines of at most :data:`MAX_LINE` bytes.

    ``feed`` returns the complete lines, without their LF or CRLF, in order.
    A line that runs past the limit is discarded up to its newline and shows
    up once as ``None`` where it stood, so the server can answer it with an
    error and go on; memory held never exceeds the limit.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._discarding = False

    @property
    def pending(self) -> int:
        """Bytes held that are not yet a whole line."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | None]:
        lines: list[bytes | None] = []
        view = memoryview(data)
        while view:
            end = data.find(b"\n", len(data) - len(view))
            chunk = view if end < 0 else view[: end + 1 - (len(data) - len(view))]
            view = view[len(chunk):]
            if self._discarding:
                self._discarding = end < 0
                continue
            self._buf += chunk
            if end < 0:
                if len(self._buf) >= self._limit:
                    self._buf.clear()
                    self._discarding = True
                    lines.append(None)
                break
            line = bytes(self._buf)
            self._buf.clear()
            if len(line) > self._limit:
                lines.append(None)
            else:
                lines.append(line[:-2] if line.endswith(b"\r\n") else line[:-1])
        return lines


def parse_request(line: bytes, source: str = "request") -> Request:
    """One request line (without or with its ending) into a Request; ParseError if bad."""
    line = line.rstrip(b"\r\n")
    if len(line) + 2 > MAX_LINE:
        raise ParseError(f"line over {MAX_LINE} bytes", source)
    if not line:
        raise ParseError("empty line; a request is 'command VERB [KEY VALUE]...'", source)
    if not _is_line(line):
        raise ParseError("not a line of printable ASCII words separated by single spaces", source)
    return _from_words(line.decode("ascii").split(" "), source)


def parse_response(line: bytes, source: str = "response") -> Response:
    """One response line into a Response; ParseError if it is neither ok nor error."""
    line = line.rstrip(b"\r\n")
    if len(line) + 2 > MAX_LINE or not _is_line(line):
        raise ParseError("response is not one short line of printable ASCII", source)
    words = line.decode("ascii").split(" ")
    if words[0] == "ok":
        rest = words[1:]
        pairs = tuple(zip(rest[::2], rest[1::2]))
        return Response(True, fields=pairs, text=" ".join(rest))
    if words[0] == "error" and len(words) >= 2:
        return Response(False, words[1], " ".join(words[2:]))
    raise ParseError(f"response starts with {words[0][:20]!r}, not ok or error", source)


def _from_words(words: list[str], source: str) -> Request:
    if len(words) < 2 or words[0] != "command":
        raise ParseError("request must start with 'command VERB'", source)
    verb = words[1].lower()
    if verb not in VERBS:
        raise ParseError(f"unknown verb {words[1][:20]!r}", source)
    rest = words[2:]
    if len(rest) % 2:
        raise ParseError(f"key {rest[-1][:20]!r} has no value", source)
    domains: list[str] = []
    ports: list[int] = []
    protocols: list[str] = []
    single: dict[str, str] = {}
    for key, value in zip(rest[::2], rest[1::2]):
        if key == "domain":
            domain = value.lower().rstrip(".")
            if not _is_domain(domain):
                raise ParseError(f"bad domain {value[:64]!r}", source)
            if domain not in domains:
                domains.append(domain)
        elif key == "port":
            # ASCII digits only: str.isdigit() also says yes to "²", "①" and
            # other scripts' digits, which int() then refuses or reads as 0-9.
            if not (0 < len(value) <= 5 and value.isascii() and value.isdigit()
                    and 0 < int(value) < 65536):
                raise ParseError(f"bad port {value[:8]!r}", source)
            ports.append(int(value))
        elif key == "protocol":
            if not _is_protocol(value.lower()):
                raise ParseError(f"bad protocol {value[:20]!r}", source)
            protocols.append(value.lower())
        elif key in ("apikey", "fingerprint", "lineage", "event", "id", "client",
                     "acme_server", "renew_before"):
            if key in single:
                raise ParseError(f"{key} given twice", source)
            single[key] = value
        # Any other key is ignored (docs/protocol.md: forward compatibility).
    if len(domains) > MAX_DOMAINS:
        raise ParseError(f"more than {MAX_DOMAINS} domains", source)
    if verb == "add" and not domains:
        raise ParseError("add needs at least one domain", source)
    if len(protocols) > len(ports):
        raise ParseError("more protocols than ports", source)
    fingerprint = single.get("fingerprint")
    if fingerprint is not None:
        fingerprint = fingerprint.lower().replace(":", "")
        if not _is_fingerprint(fingerprint):
            raise ParseError("fingerprint is not 64 hex digits (SHA-256)", source)
    event = single.get("event")
    if event is not None and event not in EVENTS:
        raise ParseError(f"unknown event {event[:20]!r}", source)
    for key in ("lineage", "id", "client"):
        if key in single and not _is_token(single[key]):
            raise ParseError(f"bad {key} {single[key][:20]!r}", source)
    acme_server = single.get("acme_server")
    if acme_server is not None and not _is_acme_server(acme_server):
        raise ParseError(f"bad acme_server {acme_server[:40]!r} (an http(s) URL)", source)
    renew_before = None
    if "renew_before" in single:
        renew_before = _renew_before(single["renew_before"])
        if renew_before is None:
            raise ParseError(f"bad renew_before {single['renew_before'][:12]!r} (seconds,"
                             f" at most {MAX_RENEW_BEFORE})", source)
    apikey = single.get("apikey")
    if apikey is not None and not _is_token(apikey):
        raise ParseError("bad apikey", source)  # never echo the value
    return Request(
        verb=verb,
        domains=tuple(domains),
        apikey=apikey,
        ports=tuple(ports),
        protocols=tuple(protocols),
        fingerprint=fingerprint,
        lineage=single.get("lineage"),
        event=event,
        id=single.get("id"),
        client=single.get("client"),
        acme_server=acme_server,
        renew_before=renew_before,
    )
