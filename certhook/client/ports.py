"""The ``[ports]`` section of certhook's conf: where each lineage is served.

One key per lineage, its value the complete list of ``PORT``,
``PORT/PROTOCOL`` or ``PROTOCOL`` entries separated by commas or white
space (docs/probe.md)::

    [ports]
    mail.example.org = 25/smtp, 587, 993, imap

Both the certbot hook (which reports the ports to the audit server) and
``certhook probe --from-certbot`` read it through :func:`ports_for_lineage`.
The hook runs on every renewal, so this module imports nothing but
:mod:`certhook.names` and :mod:`certhook.errors` (no ``re``, no probe
package); an entry means what the same text means in a probe target's
port and protocol (tests/test_probe_ports.py checks the two grammars agree).
"""

from __future__ import annotations

from certhook.errors import ParseError
from certhook.names import PROTOCOL_PORTS, STARTTLS_PORTS, TLS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["parse_ports", "ports_for_lineage", "protocol_for_port"]

_BY_PORT = {port: name for name, port in STARTTLS_PORTS.items()}


def protocol_for_port(port: int) -> str:
    """The STARTTLS protocol whose default port ``port`` is, else ``"tls"``."""
    return _BY_PORT.get(port, TLS)


def check_protocol(name: str, source: str | None) -> str:
    """``name`` if it is a known protocol, else :class:`ParseError` listing them."""
    if name not in PROTOCOL_PORTS:
        listed = ", ".join(sorted(PROTOCOL_PORTS))
        raise ParseError(f"unknown protocol {name!r} (known: {listed})", source)
    return name


def check_port(text: str, whole: str, source: str | None) -> int:
    """The port number ``text`` holds (ASCII digits, 1 to 65535), else :class:`ParseError`."""
    if not text.isdigit() or not text.isascii() or not 0 < int(text) < 65536:
        raise ParseError(f"{whole!r}: port must be a number from 1 to 65535", source)
    return int(text)


def _entries(value: str) -> list[str]:
    """``value`` split at runs of commas and white space (``str.isspace``, as
    ``re``'s ``\\s``), empty pieces dropped."""
    return "".join(" " if c == "," else c for c in value).split()


def parse_ports(value: str, source: str | None = None) -> list[tuple[int, str]]:
    """The ``(port, protocol)`` pairs of one ``[ports]`` value, each once, in order.

    A bare port takes its protocol from :func:`protocol_for_port`, a bare
    protocol its default port. Raises :class:`ParseError` on a bad entry.
    """
    pairs: list[tuple[int, str]] = []
    for entry in _entries(value):
        port_text, slash, protocol = entry.partition("/")
        if not slash and not port_text.isdigit():
            protocol = check_protocol(port_text, source)
            port = PROTOCOL_PORTS[protocol]
        else:
            port = check_port(port_text, entry, source)
            protocol = check_protocol(protocol, source) if slash else protocol_for_port(port)
        if (port, protocol) not in pairs:
            pairs.append((port, protocol))
    return pairs


def ports_for_lineage(
    sections: Mapping[str, Mapping[str, str]], lineage: str
) -> list[tuple[int, str]]:
    """The ``(port, protocol)`` pairs to probe for a lineage's names.

    ``sections`` is certhook's conf as :func:`certhook.client.ini.read_ini`
    gives it; keys are case-insensitive. The value is the complete list
    (leave 443 out to skip HTTPS); a lineage without a key is probed on 443
    alone. A bad entry raises :class:`ParseError` naming the lineage.
    """
    value = sections.get("ports", {}).get(lineage.lower())
    if value is None:
        return [(PROTOCOL_PORTS[TLS], TLS)]
    return parse_ports(value, f"[ports] {lineage}")
