"""Scripted STARTTLS peers: what servers say, step by step, and how they fail.

Shared by the sans-IO tests (test_starttls_dialogues.py) and the pump tests
(test_starttls_pump.py). The bytes are written from the RFCs and protocol
documents, not captured from any one server; the real servers are in
test_starttls_real.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from certhook.probe.starttls import Dialogue, dialogue

CLIENT = "client.example"
SERVER = "mail.example"

# --- peers' bytes -------------------------------------------------------------


def ber(tag: int, *parts: bytes, long: bool = False) -> bytes:
    """A BER TLV; ``long`` writes the length as 0x84 plus four octets (Active Directory)."""
    value = b"".join(parts)
    if long:
        length = b"\x84" + len(value).to_bytes(4, "big")
    elif len(value) < 0x80:
        length = bytes([len(value)])
    else:
        length = b"\x82" + len(value).to_bytes(2, "big")
    return bytes([tag]) + length + value


def ldap_reply(code: int = 0, diag: bytes = b"", msgid: int = 1, op: int = 0x78,
               long: bool = False) -> bytes:
    result = ber(0x0A, bytes([code])) + ber(0x04, b"") + ber(0x04, diag)
    return ber(0x30, ber(0x02, bytes([msgid])), ber(op, result, long=long), long=long)


LDAP_REQUEST = ber(0x30, ber(0x02, b"\x01"), ber(0x77, ber(0x80, b"1.3.6.1.4.1.1466.20037")))


def mysql_handshake(caps: int = 0x0800 | 0x0200 | 0x8000 | 0x00080000, version: int = 10,
                    seq: int = 0) -> bytes:
    payload = (
        bytes([version]) + b"10.11.6-MariaDB\0" + (7).to_bytes(4, "little") + b"abcdefgh\0"
        + (caps & 0xFFFF).to_bytes(2, "little") + b"\x21\x02\x00"
        + (caps >> 16).to_bytes(2, "little") + b"\x15" + b"\0" * 10
        + b"ijklmnopqrst\0" + b"mysql_native_password\0"
    )
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


MYSQL_REQUEST = (
    b"\x20\x00\x00\x01" + (0x0800 | 0x0200 | 0x8000 | 0x1).to_bytes(4, "little")
    + (16 * 1024 * 1024).to_bytes(4, "little") + b"\x21" + b"\0" * 23
)
PG_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"

XMPP_HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:{kind}'"
    " xmlns:stream='http://etherx.jabber.org/streams' to='mail.example' version='1.0'>"
)
XMPP_OPEN = (
    b"<?xml version='1.0'?>\n<stream:stream xmlns='jabber:client' xml:lang='en'"
    b" xmlns:stream='http://etherx.jabber.org/streams' id='a>b' from='mail.example'"
    b" version=\"1.0\">"
)
TLS_NS = b"urn:ietf:params:xml:ns:xmpp-tls"
STARTTLS_EL = b"<starttls xmlns='" + TLS_NS + b"'/>"
FEATURES = (
    b"<stream:features><starttls xmlns='" + TLS_NS + b"'><required/></starttls>"
    b"<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    b"</mechanisms></stream:features>"
)
PROCEED = b"<proceed xmlns='" + TLS_NS + b"'/>"


@dataclass(frozen=True)
class Script:
    """A conversation: (what the client sends, what the server answers) steps."""

    name: str
    protocol: str
    steps: Sequence[tuple[bytes, bytes]]
    last: bytes = b""  # what the client sends on the go-ahead (MySQL's SSLRequest)

    def __str__(self) -> str:
        return self.name


EHLO = f"EHLO {CLIENT}\r\n".encode()
SCRIPTS = [
    Script("smtp", "smtp", [
        (b"", b"220-mail.example ESMTP\r\n220 ready\r\n"),
        (EHLO, b"250-mail.example\r\n250-PIPELINING\r\n250-starttls\r\n250 8BITMIME\r\n"),
        (b"STARTTLS\r\n", b"220 2.0.0 Ready to start TLS\r\n"),
    ]),
    Script("smtp-bare-lf-bare-code", "smtp", [
        (b"", b"220\n"),
        (EHLO, b"250-mail.example\n250 STARTTLS\n"),
        (b"STARTTLS\r\n", b"220\n"),
    ]),
    Script("submission", "submission", [
        (b"", b"220 mail.example ESMTP\r\n"),
        (EHLO, b"250-mail.example\r\n250-AUTH PLAIN\r\n250 STARTTLS\r\n"),
        (b"STARTTLS\r\n", b"220 go ahead\r\n"),
    ]),
    Script("lmtp", "lmtp", [
        (b"", b"220 mail.example LMTP ready\r\n"),
        (f"LHLO {CLIENT}\r\n".encode(), b"250-mail.example\r\n250-STARTTLS\r\n250 PIPELINING\r\n"),
        (b"STARTTLS\r\n", b"220 2.0.0 Begin TLS.\r\n"),
    ]),
    Script("ftp", "ftp", [
        (b"", b"220-Welcome\r\n   free text, RFC 959 4.2\r\n220-still\r\n220 ready\r\n"),
        (b"AUTH TLS\r\n", b"234 AUTH TLS successful\r\n"),
    ]),
    Script("ftp-120", "ftp", [
        (b"", b"120 ready in 1 minute\r\n220 ready\r\n"),
        (b"AUTH TLS\r\n", b"234 go\r\n"),
    ]),
    Script("nntp", "nntp", [
        (b"", b"200 news.example ready, posting allowed\r\n"),
        (b"STARTTLS\r\n", b"382 Continue with TLS negotiation\r\n"),
    ]),
    Script("nntp-201", "nntp", [
        (b"", b"201 no posting\r\n"),
        (b"STARTTLS\r\n", b"382 go\r\n"),
    ]),
    Script("pop3", "pop3", [
        (b"", b"+OK Dovecot ready.\r\n"),
        (b"CAPA\r\n", b"+OK\r\nCAPA\r\nTOP\r\n..dotted\r\nstls\r\nSASL PLAIN\r\n.\r\n"),
        (b"STLS\r\n", b"+OK Begin TLS negotiation now.\r\n"),
    ]),
    Script("pop3-no-capa", "pop3", [
        (b"", b"+OK\r\n"),
        (b"CAPA\r\n", b"-ERR unknown command\r\n"),
        (b"STLS\r\n", b"+OK\r\n"),
    ]),
    Script("imap-capability-code", "imap", [
        (b"", b"* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS LOGINDISABLED] ready.\r\n"),
        (b"a002 STARTTLS\r\n", b"a002 OK Begin TLS negotiation now.\r\n"),
    ]),
    Script("imap-capability-command", "imap", [
        (b"", b"* OK ready\r\n"),
        (b"a001 CAPABILITY\r\n",
         b"* CAPABILITY IMAP4rev1 starttls\r\n* XDATA {12}\r\nline1\r\n{3}\r\n tail\r\n"
         b"a001 OK done\r\n"),
        (b"a002 STARTTLS\r\n", b"* OK still here\r\na002 ok go\r\n"),
    ]),
    Script("sieve", "sieve", [
        (b"", b'"IMPLEMENTATION" "Dovecot Pigeonhole"\r\n"SIEVE" "fileinto reject"\r\n'
              b'"NOTIFY" "mailto"\r\n"SASL" ""\r\n"STARTTLS"\r\n"VERSION" "1.0"\r\n'
              b'OK "Dovecot ready."\r\n'),
        (b"STARTTLS\r\n", b'OK "Begin TLS negotiation now."\r\n'),
    ]),
    Script("sieve-literals", "sieve", [
        # A literal that looks like lines and an OK; a capability as a literal.
        (b"", b'"IMPLEMENTATION" {9}\r\nx"\r\nOK\r\n{\r\n{8}\r\nstarttls\r\nOK\r\n'),
        (b"STARTTLS\r\n", b"OK (SASL) {2}\r\nok\r\n"),
    ]),
    Script("ldap", "ldap", [(LDAP_REQUEST, ldap_reply())]),
    Script("ldap-long-lengths", "ldap", [(LDAP_REQUEST, ldap_reply(long=True))]),
    Script("ldap-response-name", "ldap", [(LDAP_REQUEST, ber(0x30, ber(0x02, b"\x01"), ber(
        0x78, ber(0x0A, b"\x00"), ber(0x04, b""), ber(0x04, b"go"),
        ber(0x8A, b"1.3.6.1.4.1.1466.20037"))))]),
    Script("xmpp", "xmpp", [
        (XMPP_HEADER.format(kind="client").encode(), XMPP_OPEN + b"\n  " + FEATURES),
        (STARTTLS_EL, PROCEED),
    ]),
    Script("xmpp-prefixes", "xmpp", [
        (XMPP_HEADER.format(kind="client").encode(),
         b"<s:stream xmlns:s='http://etherx.jabber.org/streams' xmlns='jabber:client'>"
         b"<s:features><t:starttls xmlns:t=\"" + TLS_NS + b"\"/></s:features>"),
        (STARTTLS_EL, b"<proceed xmlns='" + TLS_NS + b"'></proceed>"),
    ]),
    Script("xmpp-server", "xmpp-server", [
        (XMPP_HEADER.format(kind="server").encode(),
         XMPP_OPEN.replace(b"jabber:client", b"jabber:server") + FEATURES),
        (STARTTLS_EL, PROCEED),
    ]),
    Script("postgres", "postgres", [(PG_REQUEST, b"S")]),
    Script("mysql", "mysql", [(b"", mysql_handshake())], last=MYSQL_REQUEST),
]


def new(protocol: str) -> Dialogue:
    return dialogue(protocol, SERVER, client_name=CLIENT)


def script(name: str) -> Script:
    return next(s for s in SCRIPTS if s.name == name)


# --- failure replies ----------------------------------------------------------

FAILURES = [
    # (script, step, server's reply, message)
    ("smtp", 0, b"554 5.3.2 no service here\r\n",
     "smtp: unexpected greeting '554 5.3.2 no service here'"),
    ("smtp", 0, b"hello there\r\n", "smtp: malformed reply 'hello there'"),
    ("smtp", 0, b"220 hi\r\n250 early\r\n",
     "smtp: server sent data behind '220 hi', before our command"),
    ("smtp", 1, b"502 5.5.1 EHLO not implemented\r\n",
     "smtp: EHLO refused: '502 5.5.1 EHLO not implemented'"),
    ("smtp", 1, b"250-mail.example\r\n250-STARTTLSX\r\n250 SIZE\r\n", "smtp: STARTTLS not offered"),
    ("smtp", 1, b"250 STARTTLS\r\n", "smtp: STARTTLS not offered"),  # line 1 is the domain
    ("smtp", 2, b"454-4.7.0 TLS not\r\n454 available\r\n",
     "smtp: STARTTLS refused: '454-4.7.0 TLS not 454 available'"),
    ("smtp", 2, b"454 \x00\x1b[1m\xff\r\n", "smtp: STARTTLS refused: '454 \\x00\\x1b[1m\\xff'"),
    ("submission", 2, b"501 Syntax error\r\n", "submission: STARTTLS refused: '501 Syntax error'"),
    ("lmtp", 1, b"500 5.5.2 unknown command\r\n",
     "lmtp: LHLO refused: '500 5.5.2 unknown command'"),
    ("ftp", 0, b"421 Service not available\r\n",
     "ftp: unexpected greeting '421 Service not available'"),
    ("ftp", 1, b"530 Please login with USER and PASS.\r\n",
     "ftp: AUTH TLS refused: '530 Please login"),
    ("ftp", 1, b"504 AUTH TLS not supported\r\n", "ftp: AUTH TLS refused: '504"),
    ("nntp", 0, b"502 service unavailable\r\n",
     "nntp: unexpected greeting '502 service unavailable'"),
    ("nntp", 1, b"580 can not initiate TLS negotiation\r\n", "nntp: STARTTLS refused: '580"),
    ("pop3", 0, b"-ERR go away\r\n", "pop3: unexpected greeting '-ERR go away'"),
    ("pop3", 0, b"+OKAY\r\n", "pop3: malformed reply '+OKAY'"),
    ("pop3", 1, b"+OK\r\nTOP\r\nUSER\r\n.\r\n", "pop3: STLS not offered"),
    ("pop3", 2, b"-ERR TLS unavailable\r\n", "pop3: STLS refused: '-ERR TLS unavailable'"),
    ("imap-capability-command", 0, b"* BYE too many connections\r\n",
     "imap: unexpected greeting '* BYE too many"),
    ("imap-capability-command", 0, b"* PREAUTH welcome back\r\n", "imap: PREAUTH greeting"),
    ("imap-capability-command", 0, b"a001 OK ready\r\n",
     "imap: unexpected response 'a001 OK ready'"),
    ("imap-capability-command", 0, b"* OK hi\r\na001 OK pipelined\r\n",
     "imap: reply before our command was sent"),
    ("imap-capability-code", 0, b"* OK [CAPABILITY IMAP4rev1 LOGIN] hi\r\n",
     "imap: STARTTLS not offered"),
    ("imap-capability-command", 1, b"* CAPABILITY IMAP4rev1\r\na001 OK\r\n",
     "imap: STARTTLS not offered"),
    ("imap-capability-command", 1, b"a001 BAD what\r\n",
     "imap: a001 CAPABILITY refused: 'a001 BAD what'"),
    ("imap-capability-command", 1, b"+ go on\r\n", "imap: unexpected response '+ go on'"),
    ("imap-capability-command", 1, b"a009 OK\r\n", "imap: unexpected response 'a009 OK'"),
    ("imap-capability-command", 2, b"a002 NO [UNAVAILABLE] TLS not ready\r\n",
     "imap: a002 STARTTLS refused: 'a002 NO [UNAVAILABLE]"),
    ("imap-capability-command", 2, b"a002 BAD\r\n", "imap: a002 STARTTLS refused"),
    ("imap-capability-command", 2, b"* BYE shutting down\r\n",
     "imap: server closes: '* BYE shutting down'"),
    ("sieve", 0, b'NO "go away"\r\n', "sieve: unexpected greeting 'NO \"go away\"'"),
    ("sieve", 0, b'"IMPLEMENTATION" "x"\r\nOK\r\n', "sieve: STARTTLS not offered"),
    ("sieve", 0, b"IMPLEMENTATION x\r\n", "sieve: malformed response 'IMPLEMENTATION x'"),
    ("sieve", 0, b'"STARTTLS"\r\nOK\r\n"extra"\r\n',
     "sieve: server sent data behind 'OK', before our command"),
    ("sieve", 1, b'NO "TLS unavailable"\r\n', "sieve: STARTTLS refused: 'NO \"TLS unavailable\"'"),
    ("sieve", 1, b'BYE "bye"\r\n', "sieve: STARTTLS refused"),
    ("sieve", 1, b'"STARTTLS"\r\n', "sieve: unexpected response"),
    ("ldap", 0, ldap_reply(2, b"unsupported extended operation"),
     "ldap: StartTLS refused: resultCode 2 (protocolError),"
     " diagnosticMessage 'unsupported extended operation'"),
    ("ldap", 0, ldap_reply(52, long=True),
     "ldap: StartTLS refused: resultCode 52 (unavailable), diagnosticMessage (empty)"),
    ("ldap", 0, ldap_reply(1, b"TLS already started", msgid=0),
     "ldap: server sent a notice of disconnection: resultCode 1"),
    ("ldap", 0, ldap_reply(msgid=2), "ldap: reply to messageID 2, we sent 1"),
    ("ldap", 0, ldap_reply(op=0x61), "ldap: reply is not an ExtendedResponse (tag 0x61)"),
    ("ldap", 0, b"\x30\x80\x02\x01\x01\x00\x00", "ldap: malformed reply: indefinite length"),
    ("ldap", 0, ber(0x31, b"\x02\x01\x01"), "ldap: malformed reply: LDAPMessage with tag 0x31"),
    ("ldap", 0, ber(0x30, ber(0x02, b"\x01"), ber(0x78, ber(0x04, b""))),
     "ldap: malformed reply: resultCode"),
    ("ldap", 0, ber(0x30, ber(0x02, b"\x01"), b"\x78\x05\x0a\x01"),
     "ldap: malformed reply: truncated"),
    ("xmpp", 0, XMPP_OPEN + b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
     b"</stream:features>",
     "xmpp: STARTTLS not offered"),
    ("xmpp", 0, XMPP_OPEN + b"<stream:features><starttls xmlns='jabber:client'/></stream:features>",
     "xmpp: STARTTLS not offered"),
    ("xmpp", 0, XMPP_OPEN
     + b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
     b"</stream:error>", "xmpp: stream error: host-unknown"),
    ("xmpp", 0, XMPP_OPEN + b"</stream:stream>", "xmpp: server closed the stream"),
    ("xmpp", 0, XMPP_OPEN + FEATURES + PROCEED, "xmpp: reply before our command was sent"),
    ("xmpp", 0, b"<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", "xmpp: comment, DTD or CDATA in the stream"),
    ("xmpp", 0, XMPP_OPEN + b"<!-- hi -->", "xmpp: comment, DTD or CDATA in the stream"),
    ("xmpp", 0, XMPP_OPEN + b"<?php evil ?>", "xmpp: processing instruction in the stream"),
    ("xmpp", 0, b"<html><body>", "xmpp: expected a stream header, got '<html>'"),
    ("xmpp", 0, b"<x:stream xmlns='jabber:client'>", "xmpp: undeclared namespace prefix 'x'"),
    ("xmpp", 0, XMPP_OPEN + b"<stream:features></stream:feature>",
     "xmpp: end tag '</stream:feature>' does not match"),
    ("xmpp", 0, XMPP_OPEN + b"<a b=c>", "xmpp: malformed tag '<a b=c>'"),
    ("xmpp", 0, b"</stream:stream>", "xmpp: malformed tag"),
    ("xmpp", 1, b"<failure xmlns='" + TLS_NS + b"'/></stream:stream>",
     "xmpp: STARTTLS refused: '<failure"),
    ("xmpp", 1, b"<message xmlns='jabber:client'>hi</message>",
     "xmpp: unexpected element '<message"),
    ("xmpp", 1, b"<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
     "xmpp: stream error: policy-violation"),
    ("xmpp-server", 1, b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
     "xmpp-server: unexpected element"),
    ("postgres", 0, b"N", "postgres: server does not support SSL"),
    ("postgres", 0, b"EFATAL: unsupported frontend protocol",
     "postgres: server answered with an error"),
    ("postgres", 0, b"HTTP/1.1 400", "postgres: unexpected answer to the SSLRequest: 'H"),
    ("mysql", 0, mysql_handshake(caps=0x0200 | 0x8000), "mysql: server does not support SSL"),
    ("mysql", 0, mysql_handshake(caps=0x0800), "mysql: server too old: no CLIENT_PROTOCOL_41"),
    ("mysql", 0, mysql_handshake(version=9), "mysql: unsupported protocol version '\\t'"),
    ("mysql", 0, mysql_handshake(seq=3), "mysql: handshake packet with sequence id 3"),
    ("mysql", 0, b"\x05\x00\x00\x00\x0a5.7\x00\x00", "mysql: truncated handshake packet"),
    ("mysql", 0, b"\x2c\x00\x00\x00\xff\x6a\x04Host '10.0.0.1' is not allowed to connect",
     "mysql: server refused the connection:"
     " error 1130 'Host '10.0.0.1' is not allowed to connect'"),
]


# --- limits ------------------------------------------------------------------

LONG_LINE = b"2" * 5000
LIMITS = [
    # (protocol, bytes the server sends, message)
    *[(p, LONG_LINE, "line longer than 4096 bytes")
      for p in ("smtp", "lmtp", "ftp", "nntp", "pop3", "imap", "sieve")],
    ("smtp", b"220-" + b"x" * 4093 + b"\r\n", "line longer than 4096 bytes"),
    ("smtp", b"220-" + b"x" * 4000 + b"\r\n" + (b"220-" + b"x" * 4000 + b"\r\n") * 20,
     "reply longer than 65536 bytes"),
    ("smtp", b"220-x\r\n" * 600, "reply of more than 512 lines"),
    ("ftp", b"220-x\r\n" + b"\r\n" * 600, "reply of more than 512 lines"),
    ("imap", b"* OK hi\r\n" + b"* 1 EXISTS\r\n" * 30000,
     "more than 262144 bytes before the go-ahead"),
    ("imap", b"* OK hi\r\n* 1 FETCH (BODY {999999999}\r\n",
     "literal of 999999999 bytes is too long"),
    ("imap", b"* OK hi\r\n* X {70000}\r\n" + b"a" * 70000, "literal of 70000 bytes is too long"),
    ("sieve", b'"X" {99999}\r\n', "literal of 99999 bytes is too long"),
    ("sieve", b'"X"\r\n' * 600, "reply of more than 512 lines"),
    ("xmpp", b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' a='" + b"x" * 5000,
     "tag longer than 4096 bytes"),
    ("xmpp", b"<?xml " + b" " * 5000, "tag longer than 4096 bytes"),
    ("xmpp", XMPP_OPEN + b"<stream:features>" + b"<x/>" * 600,
     "stream features of more than 512 tags"),
    ("xmpp", XMPP_OPEN + b"<stream:features>" + b"text " * 14000,
     "stream features longer than 65536"),
    ("xmpp", XMPP_OPEN + b"<a>" * 40, "elements nested deeper than 32"),
    ("ldap", b"\x30\x84\x7f\xff\xff\xff",
     "malformed reply: value of 2147483647 bytes exceeds 65536"),
    ("ldap", b"\x30\x85\x01\x00\x00\x00\x00", "malformed reply: length of 5 octets"),
    ("mysql", b"\xff\xff\xff\x00", "handshake packet of 16777215 bytes"),
]
