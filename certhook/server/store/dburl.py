"""The ``db`` setting: which database the audit server uses, and how to name it safely.

Three forms (docs/server.md "Database"):

- a bare path, ``/var/lib/certhook/certhook.db`` or ``certhook.db``: SQLite;
- ``sqlite:///ABS/PATH`` (an empty host, as in RFC 8089 ``file:///`` URLs),
  ``sqlite:/ABS/PATH`` or ``sqlite:REL/PATH``: SQLite, percent-decoded;
  ``sqlite:////ABS/PATH`` (SQLAlchemy's absolute spelling) is the same file;
- ``postgresql://USER:PASSWORD@HOST:PORT/DBNAME?PARAM=VALUE`` (or
  ``postgres://``), the libpq URI of PostgreSQL's manual, section 34.1.1
  "Connection Strings": hosts may be ``[::1]``, several ``h1:p1,h2:p2``, or
  none (the local Unix socket); parameters are libpq's (:data:`PG_PARAMS`).

A URL may hold a password. :func:`redacted` replaces it (and a
``password=`` or ``sslpassword=`` parameter) with ``***``, and it is the only
form of a URL that goes into a message, a log line or an exception: every
error raised here is built from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Union
from urllib.parse import unquote

from certhook.errors import ParseError

__all__ = ["PG_PARAMS", "PostgresUrl", "SqliteUrl", "Target", "parse", "redacted"]

# libpq's URI query parameters that a server's db setting may carry (the
# keywords of PostgreSQL 16's section 34.1.2); libpq refuses any other.
PG_PARAMS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "passfile",
    "channel_binding", "connect_timeout", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "sslmode", "sslcompression", "sslcert", "sslkey",
    "sslpassword", "sslcertmode", "sslrootcert", "sslcrl", "sslcrldir", "sslsni",
    "requirepeer", "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode",
    "krbsrvname", "gsslib", "gssdelegation", "service", "target_session_attrs",
    "load_balance_hosts",
})
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_ALLOWED = "a path, sqlite:///PATH or postgresql://USER@HOST/DBNAME"
_KEYWORDS = re.compile(r"^[A-Za-z_]+\s*=")  # libpq's host=... dbname=... form
_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/*")  # scheme: and any slashes
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# password=... in a query string or a keyword/value conninfo ('quoted' or bare)
_SECRET_VALUE = re.compile(
    r"((?:^|[?&\s;])(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^&#\s]*)", re.IGNORECASE)


def redacted(url: str) -> str:
    """``url`` with its password and ``password=`` parameters replaced by ``***``.

    Works on any text, parseable or not: the part before the last ``@`` of
    a ``scheme://`` URL is the user info, and everything in it after the
    first ``:`` is hidden (an unencoded ``@`` or ``/`` in a password may
    hide more than the password, never less).
    """
    text = _redact_query(_SECRET_VALUE.sub(r"\1***", url))
    match = _PREFIX.match(text)
    if match and "@" in text[match.end():]:
        userinfo, _, hosts = text[match.end():].rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            text = f"{match.group(0)}{user}:***@{hosts}"
    return text


def _redact_query(text: str) -> str:
    """Hide the value of each query parameter named ``...password``, however encoded."""
    head, question, query = text.partition("?")
    if not question:
        return text
    items = []
    for item in query.split("&"):
        name, equals, _ = item.partition("=")
        if equals and unquote(name).strip().lower().endswith("password"):
            item = f"{name}=***"
        items.append(item)
    return f"{head}?{'&'.join(items)}"


@dataclass(frozen=True)
class SqliteUrl:
    """A SQLite database file."""

    path: str

    def redacted(self) -> str:
        return self.path


@dataclass(frozen=True)
class PostgresUrl:
    """A PostgreSQL database, as a libpq URI (``url`` holds the password: never print it)."""

    url: str = field(repr=False)
    hosts: tuple[tuple[str, int | None], ...]  # () : the local Unix socket
    user: str | None
    dbname: str | None
    params: tuple[tuple[str, str], ...]
    password: str | None = field(default=None, repr=False)

    def redacted(self) -> str:
        return redacted(self.url)

    def param(self, name: str) -> str | None:
        return next((value for key, value in self.params if key == name), None)


Target = Union[SqliteUrl, PostgresUrl]


def parse(text: str, key: str = "db") -> Target:
    """The database that ``text`` names; :class:`ParseError` (``key: why``, the URL
    redacted) for anything else."""
    value = text.strip()
    shown = repr(redacted(value)[:120])
    if not value:
        raise ParseError(f"empty: use {_ALLOWED}", key)
    if "\x00" in value or any(ord(c) < 0x20 for c in value):
        raise ParseError(f"{shown} holds control characters", key)
    match = _SCHEME.match(value)
    if match is None:
        if _KEYWORDS.match(value):
            raise ParseError(f"{shown} is a keyword=value string: write it as a URL,"
                             " postgresql://USER@HOST/DBNAME?PARAM=VALUE", key)
        return SqliteUrl(value)
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        return _sqlite(value[match.end():], shown, key)
    if scheme in ("postgresql", "postgres"):
        return _postgres(value, match.end(), shown, key)
    if "://" in value or scheme in ("file", "mysql", "mariadb", "http", "https"):
        raise ParseError(f"{shown}: unknown scheme {scheme!r}: use {_ALLOWED}", key)
    return SqliteUrl(value)  # a relative path with a colon in its first part


def _sqlite(rest: str, shown: str, key: str) -> SqliteUrl:
    if "?" in rest or "#" in rest:
        raise ParseError(f"{shown}: a sqlite: URL takes no parameters", key)
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host:
            raise ParseError(f"{shown}: a sqlite: URL names no host (sqlite:///ABS/PATH)",
                             key)
        rest = slash + path
    try:
        path = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise ParseError(f"{shown}: bad percent-encoding (not UTF-8)", key) from None
    if path.startswith("//"):
        path = "/" + path.lstrip("/")  # sqlite:////abs/path (SQLAlchemy's absolute form)
    if not path or path == "/":
        raise ParseError(f"{shown}: no file named (sqlite:///ABS/PATH)", key)
    if "\x00" in path:
        raise ParseError(f"{shown}: the path holds a NUL character", key)
    return SqliteUrl(path)


def _postgres(value: str, start: int, shown: str, key: str) -> PostgresUrl:
    rest = value[start:]
    if not rest.startswith("//"):
        raise ParseError(f"{shown}: not a URL: postgresql://USER@HOST/DBNAME", key)
    rest, _, fragment = rest[2:].partition("#")
    if fragment:
        raise ParseError(f"{shown}: a fragment (#...) is not allowed", key)
    rest, _, query = rest.partition("?")
    netloc, _, dbname = rest.partition("/")
    # user info ends at the last '@' (libpq does the same with an unencoded '@')
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    user, colon, password = userinfo.partition(":")
    try:
        hosts = tuple(_host(item, shown, key) for item in hostlist.split(",")) if hostlist else ()
        params = tuple(_param(item, shown, key) for item in query.split("&") if item)
        decoded_user = unquote(user, errors="strict") if user else None
        decoded_password = unquote(password, errors="strict") if colon else None
        decoded_db = unquote(dbname, errors="strict") if dbname else None
    except UnicodeDecodeError:
        raise ParseError(f"{shown}: bad percent-encoding (not UTF-8)", key) from None
    if decoded_db is not None and "/" in decoded_db:
        raise ParseError(f"{shown}: one database name after the host, no further path", key)
    return PostgresUrl(value, hosts, decoded_user, decoded_db, params, decoded_password)


def _host(item: str, shown: str, key: str) -> tuple[str, int | None]:
    if item.startswith("["):
        host, bracket, tail = item[1:].partition("]")
        if not bracket or not host or (tail and not tail.startswith(":")):
            raise ParseError(f"{shown}: bad IPv6 host (write [::1] or [::1]:5432)", key)
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = item.partition(":")
        if not host and not port_text:
            raise ParseError(f"{shown}: an empty host in the host list", key)
    if port_text == "" and item.endswith(":"):
        raise ParseError(f"{shown}: an empty port", key)
    port = None
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ParseError(f"{shown}: the port is not a number from 1 to 65535", key)
        port = int(port_text)
    return unquote(host, errors="strict"), port


def _param(item: str, shown: str, key: str) -> tuple[str, str]:
    name, equals, value = item.partition("=")
    name, value = unquote(name, errors="strict"), unquote(value, errors="strict")
    if not equals:
        raise ParseError(f"{shown}: parameter {name[:40]!r} has no '=VALUE'", key)
    if name not in PG_PARAMS:
        raise ParseError(f"{shown}: unknown parameter {name[:40]!r} (libpq's are allowed:"
                         " sslmode, connect_timeout, application_name, ...)", key)
    if name == "sslmode" and value not in _SSLMODES:
        raise ParseError(f"{shown}: sslmode must be one of {', '.join(_SSLMODES)}", key)
    if name == "connect_timeout" and not value.isdigit():
        raise ParseError(f"{shown}: connect_timeout is a whole number of seconds", key)
    if name == "port" and not (value.isdigit() and 1 <= int(value) <= 65535):
        raise ParseError(f"{shown}: the port is not a number from 1 to 65535", key)
    return name, value
