"""What to probe: targets from the command line, a targets file, or certbot's lineages.

A target is ``host``, ``host:port``, ``[v6-address]:port`` or a bare IPv6
address, optionally followed by ``/protocol`` (``mail.example.org:25/smtp``).
The protocol is ``tls`` (TLS from the first byte) or the name of a STARTTLS
dialogue; without one it follows from the port
(:func:`certhook.client.ports.protocol_for_port`). A bare host means 443,
or the protocol's default port when a protocol is named.

``--from-certbot`` probes every name of every lineage on the ports listed for
that lineage in the ``[ports]`` section of certhook's conf
(:func:`ports_for_lineage`, from :mod:`certhook.client.ports`); the
reporting client reads the same section of the same file, through the same
reader (:func:`certhook.client.ini.read_ini`) and the same parser.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from certhook.client.ports import check_port as _port
from certhook.client.ports import check_protocol as _check_protocol
from certhook.client.ports import ports_for_lineage
from certhook.client.ports import protocol_for_port as _protocol_for_port
from certhook.errors import LocalError, ParseError
from certhook.names import PROTOCOL_PORTS

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from certhook.certbot.lineage import CertbotState

__all__ = [
    "Target",
    "certbot_fingerprints",
    "certbot_targets",
    "known_protocols",
    "parse_name",
    "parse_resolve",
    "parse_target",
    "ports_for_lineage",
    "read_targets_file",
]

#: Value type of :attr:`ProbeOptions.local_fingerprints`: one expected
#: SHA-256 fingerprint, or several when more than one lineage holds the name.
Fingerprints = Union[str, frozenset[str]]

# RFC 1035 section 2.3.4: 255 octets on the wire, 253 characters in text.
_MAX_HOST = 253
# A host may hold letters (also non-ASCII, for IDNs), digits, '-', '.', '_'
# (seen in internal names) and '%' plus an interface for IPv6 zones.
_HOST_RE = re.compile(r"[^\s/:@\[\]\\#?]+")
_PROTOCOL_RE = re.compile(r"[a-z][a-z0-9-]*")


@dataclass(frozen=True)
class Target:
    """One endpoint to probe.

    ``servername`` is the SNI to send (default: ``host``, none for an IP
    address, RFC 6066 section 3); ``expect_name`` the name the certificate
    must hold (default: ``servername``, else ``host``).
    """

    host: str
    port: int = 443
    protocol: str = "tls"
    servername: str | None = None
    expect_name: str | None = None

    @property
    def sni(self) -> str | None:
        """The server name to send in the ClientHello, if any."""
        name = self.servername or self.host
        return None if _ip(name) is not None else name.rstrip(".")

    @property
    def name_to_check(self) -> str:
        """The name the certificate must match."""
        return self.expect_name or self.servername or self.host

    @property
    def label(self) -> str:
        """``host:port``: brackets for IPv6, ``/protocol`` for STARTTLS (and ``/tls``
        on a STARTTLS port), so that :func:`parse_target` reads it back."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        explicit = self.protocol != "tls" or _protocol_for_port(self.port) != "tls"
        return f"{host}:{self.port}/{self.protocol}" if explicit else f"{host}:{self.port}"

    def __str__(self) -> str:
        return self.label


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def known_protocols() -> dict[str, int]:
    """Every protocol name a target may carry, with its default port."""
    return dict(PROTOCOL_PORTS)


def _split_host_port(text: str, source: str | None) -> tuple[str, int | None]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ParseError(f"{text!r}: '[' without ']'", source)
        host, rest = text[1:close], text[close + 1:]
        if _ip(host) is None or ":" not in host:
            raise ParseError(f"{text!r}: only IPv6 addresses go in brackets", source)
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ParseError(f"{text!r}: expected ':port' after ']'", source)
        return host, _port(rest[1:], text, source)
    if text.count(":") > 1:  # a bare IPv6 address: no port can follow it
        if _ip(text) is None:
            raise ParseError(f"{text!r}: not an IPv6 address (write [address]:port)", source)
        return text, None
    host, colon, port = text.partition(":")
    return host, _port(port, text, source) if colon else None


def _check_host(host: str, whole: str, source: str | None) -> str:
    address = _ip(host)
    if address is not None:
        return str(address)
    if (not host or len(host) > _MAX_HOST or not _HOST_RE.fullmatch(host)
            or not host.isprintable()):
        raise ParseError(f"{whole!r}: not a host name or IP address", source)
    if ".." in host or host.startswith("."):
        raise ParseError(f"{whole!r}: empty label in host name", source)
    return host.lower()


def parse_target(
    text: str,
    starttls: str | None = None,
    servername: str | None = None,
    expect_name: str | None = None,
    source: str | None = None,
) -> Target:
    """Parse ``host[:port][/protocol]``; raise :class:`ParseError` if it is not one.

    The protocol comes from the ``/protocol`` suffix, else ``starttls``,
    else the port. With no port, a named protocol brings its default port
    and a bare host means 443.
    """
    text = text.strip()
    protocol: str | None = starttls
    head, slash, tail = text.rpartition("/")
    if slash:
        if not _PROTOCOL_RE.fullmatch(tail):
            raise ParseError(f"{text!r}: bad protocol after '/'", source)
        protocol, text = tail, head
    if protocol is not None:
        _check_protocol(protocol, source)
    host, port = _split_host_port(text, source)
    host = _check_host(host, text, source)
    if port is None:
        port = known_protocols()[protocol] if protocol else 443
    if protocol is None:
        protocol = _protocol_for_port(port)
    return Target(host, port, protocol, parse_name(servername, "servername", source),
                  parse_name(expect_name, "expect-name", source))


def parse_name(value: str | None, what: str, source: str | None = None) -> str | None:
    """A ``servername`` or ``expect-name``: a host name or an IP address, or None.

    ``what`` names the option in the :class:`ParseError` a bad value raises.
    """
    if not value:
        return None
    return _check_host(value, f"{what}={value}", source)


def parse_resolve(text: str) -> tuple[tuple[str, int], tuple[str, ...]]:
    """``NAME:PORT:ADDRESS[,ADDRESS...]``, as curl's ``--resolve``: where to connect for a name.

    ``PORT`` may be ``*`` (every port, returned as 0); an IPv6 address may
    be bracketed. Returns ``((name, port), addresses)``; raises
    :class:`ParseError` if ``text`` is not one.
    """
    name, colon, rest = text.strip().partition(":")
    port_text, colon2, addresses_text = rest.partition(":")
    if not colon or not colon2 or not name:
        raise ParseError(f"{text!r}: want NAME:PORT:ADDRESS[,ADDRESS...]")
    port = 0 if port_text == "*" else _port(port_text, text, None)
    addresses = []
    for item in addresses_text.split(","):
        address = _ip(item.strip()[1:-1] if item.strip().startswith("[") else item.strip())
        if address is None:
            raise ParseError(f"{text!r}: {item.strip()!r} is not an IP address")
        addresses.append(str(address))
    return (_check_host(name, text, None), port), tuple(dict.fromkeys(addresses))


def read_targets_file(
    path: str,
    starttls: str | None = None,
    servername: str | None = None,
    expect_name: str | None = None,
) -> list[Target]:
    """Targets from a file: one per line, ``#`` comments, blank lines skipped.

    A line is ``TARGET [PROTOCOL] [servername=NAME] [expect-name=NAME]``, each
    word at most once (docs/probe.md, "Targets"). ``starttls``,
    ``servername`` and ``expect_name`` (the command line's flags) hold for
    every line that does not give its own. A bad line raises
    :class:`ParseError` naming ``path:line``.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            lines = stream.read().splitlines()
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})", path) from None
    defaults = {"servername": servername, "expect-name": expect_name}
    targets = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if words:
            targets.append(_target_line(words, starttls, defaults, f"{path}:{number}"))
    return targets


_LINE_OPTIONS = ("servername", "expect-name")


def _target_line(words: list[str], starttls: str | None,
                 defaults: Mapping[str, str | None], source: str) -> Target:
    protocol: str | None = None
    options: dict[str, str] = {}
    for word in words[1:]:
        key, equals, value = word.partition("=")
        if not equals:
            if protocol is not None:
                raise ParseError(f"unexpected {word!r}: one protocol per line", source)
            protocol = _check_protocol(word, source)
        elif key in _LINE_OPTIONS and value:
            if key in options:
                raise ParseError(f"{key} given twice", source)
            options[key] = value
        else:
            raise ParseError(f"unexpected {word!r} (servername=NAME or expect-name=NAME)", source)
    if protocol is not None and "/" in words[0]:
        raise ParseError("protocol given twice", source)
    return parse_target(
        words[0], protocol or starttls,
        options.get("servername", defaults["servername"]),
        options.get("expect-name", defaults["expect-name"]),
        source,
    )


def certbot_targets(
    state: CertbotState, sections: Mapping[str, Mapping[str, str]] | None = None
) -> tuple[list[Target], list[str]]:
    """Every name of every lineage on its ports, and the names skipped.

    Wildcard names (``*.example.org``) have no host to connect to and are
    skipped, as are names that are no host name; a lineage whose certificate
    could not be read has no names. A bad ``[ports]`` entry raises
    :class:`ParseError`.
    """
    targets: list[Target] = []
    skipped: list[str] = []
    for lineage in state.lineages:
        ports = ports_for_lineage(sections or {}, lineage.name)
        for name in lineage.domains:
            if name.startswith("*."):
                skipped.append(f"{name} (lineage {lineage.name}): a wildcard has no host to probe")
                continue
            try:
                host = _check_host(name, name, None)
            except ParseError as exc:
                skipped.append(f"{name} (lineage {lineage.name}): {exc.reason}")
                continue
            targets += [Target(host, port, protocol) for port, protocol in ports]
    return list(dict.fromkeys(targets)), skipped


def certbot_fingerprints(state: CertbotState) -> dict[str, Fingerprints]:
    """Each lineage name -> the SHA-256 fingerprint of its live ``cert.pem``.

    A name held by several lineages maps to the set of their fingerprints:
    serving any of them is serving a current certificate.
    """
    found: dict[str, set[str]] = {}
    for lineage in state.lineages:
        if lineage.certificate is None:
            continue
        for name in lineage.domains:
            found.setdefault(name.lower(), set()).add(lineage.certificate.fingerprint_sha256)
    return {
        name: next(iter(prints)) if len(prints) == 1 else frozenset(prints)
        for name, prints in found.items()
    }


def expected_fingerprints(
    fingerprints: Mapping[str, Fingerprints], name: str
) -> frozenset[str] | None:
    """The fingerprints a lineage holds for ``name`` (exact, then wildcard), or None."""
    name = name.lower().rstrip(".")
    candidates: Iterable[str] = (name,)
    if "." in name:
        candidates = (name, "*." + name.split(".", 1)[1])
    for key in candidates:
        value: Fingerprints | None = fingerprints.get(key)
        if value is not None:
            return frozenset((value,)) if isinstance(value, str) else frozenset(value)
    return None
