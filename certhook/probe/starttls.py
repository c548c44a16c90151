"""STARTTLS: talk a protocol's plaintext opening until the server agrees to TLS.

The protocols are a table (:data:`PROTOCOLS`): each row holds the facts of
one protocol, its default port, who speaks first, the command, the go-ahead
reply, and the dialogue class that plays it. The dialogues are sans-IO
(:class:`Dialogue`); :func:`negotiate` is the one place that pumps bytes
between a dialogue and a socket, and where socket errors become
:class:`~certhook.errors.RemoteError`.

Typical use, after connecting::

    negotiate(sock, protocol_for_port(port), "mail.example.org", deadline, "mail.example.org:25")
    tls = context.wrap_socket(sock, server_hostname="mail.example.org")
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Mapping
from types import MappingProxyType

from certhook.errors import ProtocolError, RemoteError, RemoteTimeout, UsageError
from certhook.probe.starttls_base import Dialogue, ProtocolRow
from certhook.probe.starttls_db import MYSQL_SSL_REQUEST, POSTGRES_SSL_REQUEST
from certhook.probe.starttls_db import MysqlDialogue as _Mysql
from certhook.probe.starttls_db import PostgresDialogue as _Postgres
from certhook.probe.starttls_imap import ImapDialogue as _Imap
from certhook.probe.starttls_imap import SieveDialogue as _Sieve
from certhook.probe.starttls_ldap import LdapDialogue as _Ldap
from certhook.probe.starttls_text import CodeDialogue as _Code
from certhook.probe.starttls_text import Pop3Dialogue as _Pop3
from certhook.probe.starttls_xmpp import XmppDialogue as _Xmpp

__all__ = [
    "DEFAULT_PORTS",
    "IMPLICIT_TLS_PORTS",
    "PROTOCOLS",
    "Dialogue",
    "ProtocolRow",
    "dialogue",
    "negotiate",
    "protocol_for_port",
]

_TLS_NS = b"urn:ietf:params:xml:ns:xmpp-tls"  # RFC 6120 section 5.4


class _Direct(Dialogue):
    """No STARTTLS: done before a byte is exchanged; the server waits for our ClientHello."""

    def __init__(self, protocol: ProtocolRow, server_name: str, client_name: str) -> None:
        super().__init__(protocol, server_name, client_name)
        self.done = True

# fmt: off
_ROWS = (
    # name, port, client speaks first, greeting, hello, capability, command, success, reference
    # SMTP: RFC 3207 section 4 (STARTTLS, 220), RFC 5321 sections 4.1.1.1 and 4.2.
    ProtocolRow("smtp", 25, False, (b"220",), b"EHLO", b"STARTTLS", b"STARTTLS", (b"220",),
             "RFC 3207", _Code),
    # Message submission: RFC 6409 section 4.1, same dialogue.
    ProtocolRow("submission", 587, False, (b"220",), b"EHLO", b"STARTTLS", b"STARTTLS", (b"220",),
             "RFC 6409, RFC 3207", _Code),
    # LMTP: RFC 2033 section 4.1 (LHLO instead of EHLO), STARTTLS as SMTP.
    ProtocolRow("lmtp", 24, False, (b"220",), b"LHLO", b"STARTTLS", b"STARTTLS", (b"220",),
             "RFC 2033, RFC 3207", _Code),
    # FTP: RFC 4217 section 4 (AUTH TLS, 234), RFC 959 section 5.4 (220 greeting).
    ProtocolRow("ftp", 21, False, (b"220",), None, None, b"AUTH TLS", (b"234",),
             "RFC 4217", _Code),
    # NNTP: RFC 3977 section 5.1.1 (200/201 greeting), RFC 4642 section 2.2.1 (382).
    ProtocolRow("nntp", 119, False, (b"200", b"201"), None, None, b"STARTTLS", (b"382",),
             "RFC 4642", _Code),
    # POP3: RFC 1939 section 4 (+OK greeting), RFC 2449 (CAPA), RFC 2595 section 4 (STLS).
    ProtocolRow("pop3", 110, False, (b"+OK",), b"CAPA", b"STLS", b"STLS", (b"+OK",),
             "RFC 2595", _Pop3),
    # IMAP: RFC 3501 sections 6.1.1 (CAPABILITY) and 6.2.1 (STARTTLS), tagged OK.
    ProtocolRow("imap", 143, False, (b"* OK",), b"a001 CAPABILITY", b"STARTTLS", b"a002 STARTTLS",
             (b"a002 OK",), "RFC 3501, RFC 2595", _Imap),
    # ManageSieve: RFC 5804 sections 1.7 (capabilities) and 2.2 (STARTTLS, OK).
    ProtocolRow("sieve", 4190, False, (b"OK",), None, b"STARTTLS", b"STARTTLS", (b"OK",),
             "RFC 5804", _Sieve),
    # LDAP: RFC 4511 section 4.14.1, the StartTLS OID in an ExtendedRequest;
    # the go-ahead is resultCode success (0) in the ExtendedResponse.
    ProtocolRow("ldap", 389, True, (), None, None, b"1.3.6.1.4.1.1466.20037", (b"0",),
             "RFC 4511, RFC 4513", _Ldap),
    # XMPP: RFC 6120 section 5.4: hello is the stream namespace (4.8.2),
    # capability the namespace of <starttls/> in the stream features.
    ProtocolRow("xmpp", 5222, True, (), b"jabber:client", _TLS_NS,
             b"<starttls xmlns='" + _TLS_NS + b"'/>", (b"proceed",), "RFC 6120", _Xmpp),
    ProtocolRow("xmpp-server", 5269, True, (), b"jabber:server", _TLS_NS,
             b"<starttls xmlns='" + _TLS_NS + b"'/>", (b"proceed",), "RFC 6120", _Xmpp),
    # PostgreSQL: "Message Flow", SSL Session Encryption: SSLRequest, "S".
    ProtocolRow("postgres", 5432, True, (), None, None, POSTGRES_SSL_REQUEST, (b"S",),
             "PostgreSQL protocol 3.0", _Postgres),
    # MySQL: "Connection Phase": HandshakeV10 (protocol version 10), then the
    # client's SSLRequest; no reply, TLS starts at once.
    ProtocolRow("mysql", 3306, False, (b"\x0a",), None, None, MYSQL_SSL_REQUEST, (),
             "MySQL client/server protocol", _Mysql),
    # No STARTTLS at all: the handshake starts on connect.
    ProtocolRow("tls", None, True, (), None, None, b"", (), "RFC 8446", _Direct),
)
# fmt: on

#: Every protocol by name, ``"tls"`` (no STARTTLS) included.
PROTOCOLS: Mapping[str, ProtocolRow] = MappingProxyType({row.name: row for row in _ROWS})

#: ProtocolRow name -> its default port, for every STARTTLS protocol.
DEFAULT_PORTS: Mapping[str, int] = MappingProxyType(
    {row.name: row.port for row in _ROWS if row.port is not None}
)

#: Ports where TLS starts on connect (IANA service names).
IMPLICIT_TLS_PORTS: frozenset[int] = frozenset({
    443,   # https
    465,   # submissions, RFC 8314 section 7.3
    563,   # nntps
    636,   # ldaps
    853,   # domain-s (DNS over TLS), RFC 7858
    989,   # ftps-data
    990,   # ftps
    992,   # telnets
    993,   # imaps, RFC 8314
    994,   # ircs (IANA)
    995,   # pop3s, RFC 8314
    3269,  # msft-gc-ssl (Active Directory global catalog)
    4843,  # opcua-tls
    5061,  # sips, RFC 3261
    5223,  # xmpp-client over TLS (legacy port)
    5349,  # turns, RFC 7350
    5671,  # amqps
    5986,  # wsmans
    6443,  # Kubernetes API
    6514,  # syslog-tls, RFC 5425
    6697,  # ircs-u, RFC 7194
    8443,  # https-alt
    8883,  # secure-mqtt
    9443,  # https-alt (common)
})

_BY_PORT = {port: name for name, port in DEFAULT_PORTS.items()}
assert len(_BY_PORT) == len(DEFAULT_PORTS), "two protocols share a default port"
assert not IMPLICIT_TLS_PORTS & set(_BY_PORT), "a port is both implicit TLS and STARTTLS"

_CHUNK = 4096  # one recv(); every dialogue caps what it buffers itself


def protocol_for_port(port: int) -> str:
    """The STARTTLS protocol whose default port ``port`` is, else ``"tls"``."""
    return _BY_PORT.get(port, "tls")


def dialogue(protocol: str, server_name: str, *, client_name: str | None = None) -> Dialogue:
    """A fresh :class:`Dialogue` for ``protocol`` with the server ``server_name``.

    ``server_name`` goes where the protocol names the server (XMPP's
    ``to``); ``client_name`` is our name in SMTP's ``EHLO`` and LMTP's
    ``LHLO`` (RFC 5321 section 4.1.1.1: the client's own name; default an
    address literal for loopback). Raises :class:`UsageError` for an
    unknown protocol or a name that cannot go on the wire.
    """
    row = PROTOCOLS.get(protocol)
    if row is None:
        known = ", ".join(sorted(PROTOCOLS))
        raise UsageError(f"unknown STARTTLS protocol {protocol!r} (known: {known})")
    client = _wire_name("[127.0.0.1]" if client_name is None else client_name)
    return row.dialogue(row, _wire_name(server_name), client)


def _wire_name(name: str) -> str:
    """``name`` as it can go on the wire: ASCII, IDNA-encoded, no spaces or controls."""
    try:
        wire = name.encode("idna").decode("ascii") if not name.isascii() else name
    except UnicodeError:
        wire = ""
    if not wire or not wire.isprintable() or any(c.isspace() for c in wire):
        raise UsageError(f"cannot use {name!r} as a name in a STARTTLS dialogue")
    return wire


def _address_literal(sock: socket.socket) -> str | None:
    """Our address as an SMTP address literal (RFC 5321 section 4.1.3)."""
    try:
        address = ipaddress.ip_address(sock.getsockname()[0])
    except (OSError, ValueError, TypeError, IndexError):
        return None
    return f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"


def _timeout(sock: socket.socket, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline passed")
    sock.settimeout(remaining)


def negotiate(
    sock: socket.socket, protocol: str, server_name: str, deadline: float, source: str
) -> None:
    """Play the STARTTLS dialogue of ``protocol`` on the connected ``sock``.

    Returns when the server agreed: the caller then wraps ``sock`` with
    :mod:`ssl`. ``deadline`` is a :func:`time.monotonic` instant that bounds
    the whole exchange. Failures name ``source`` (``host:port``):
    :class:`ProtocolError` for a refusal or a wrong reply,
    :class:`RemoteTimeout` when the deadline passes, :class:`RemoteError`
    when the connection fails or closes. The socket's timeout is restored.
    """
    talk = dialogue(protocol, server_name, client_name=_address_literal(sock))
    saved = sock.gettimeout()
    try:
        send = talk.initial()
        while True:
            if send:
                _timeout(sock, deadline)
                sock.sendall(send)
            if talk.done:
                break
            _timeout(sock, deadline)
            data = sock.recv(_CHUNK)
            if not data:
                raise RemoteError(f"{source}: connection closed during the {protocol} dialogue")
            send = talk.feed(data)
        # Injected data that came in a later segment than the go-ahead is
        # still waiting: refuse it too, as far as it has already arrived.
        sock.setblocking(False)
        try:
            late = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            late = None
        if late == b"":
            raise RemoteError(f"{source}: connection closed after the {protocol} go-ahead")
        if late is not None:
            raise ProtocolError(f"{protocol}: data after the go-ahead, before TLS started", source)
    except ProtocolError as exc:
        if exc.source is None:
            raise ProtocolError(exc.reason, source) from None
        raise
    except socket.timeout as exc:
        raise RemoteTimeout(
            f"{source}: no {protocol} STARTTLS go-ahead before the deadline"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RemoteError(f"{source}: {protocol} STARTTLS dialogue: {reason}") from exc
    finally:
        try:
            sock.settimeout(saved)
        except OSError:
            pass
