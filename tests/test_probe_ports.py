"""``[ports]`` values: the hook's cheap parser means what the probe's target grammar means.

The certbot hook maps ``[ports]`` with :mod:`certhook.client.ports` (no
``re``, no probe package: its start-up is a product figure); the probe
reads targets with :func:`certhook.probe.parse_target`. An entry ``E`` of a
``[ports]`` value must mean what ``HOST:E`` (a port, with or without
``/PROTOCOL``) or ``HOST/E`` (a protocol alone) means as a target, and be
refused when neither is a target.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certhook import names
from certhook.client.ports import parse_ports, ports_for_lineage, protocol_for_port
from certhook.errors import ParseError
from certhook.probe import starttls
from certhook.probe.targets import known_protocols, parse_target


def _as_target(entry: str) -> tuple[int, str] | None:
    """What ``entry`` means in the probe's target grammar, or None."""
    for text in (f"host.example:{entry}", f"host.example/{entry}"):
        try:
            target = parse_target(text)
        except ParseError:
            continue
        return target.port, target.protocol
    return None


def _oracle(value: str) -> list[tuple[int, str]] | None:
    """The pairs a value holds per the target grammar (split as the probe's
    parser split it before: ``re``'s ``[\\s,]+``), None if an entry is no target."""
    pairs: list[tuple[int, str]] = []
    for entry in filter(None, re.split(r"[\s,]+", value)):
        pair = _as_target(entry)
        if pair is None:
            return None
        if pair not in pairs:
            pairs.append(pair)
    return pairs


_TOKENS = [
    *names.PROTOCOL_PORTS, "SMTP", "gopher", "0", "1", "25", "443", "587", "993", "65535",
    "65536", "99999", "007", "²", "٣", "①", "/", "//", ":", "[", "]", ",", " ", "\t", "\n",
    "\x1c", "\xa0", "\u2028", "\u3000", "=", "-", ".", "#",
]


@given(st.lists(st.sampled_from(_TOKENS) | st.text(max_size=3), max_size=12).map("".join))
@example("443, 25/smtp 587,993 imap")
@example("25/")
@example("/smtp")
@example("25/smtp/tls")
@example("²")
@example("0025")
@example("tls")
@example("25\x1c587\xa0993\u3000143")
@example(",,, ,")
def test_the_hook_s_ports_parser_is_the_target_grammar(value: str) -> None:
    expected = _oracle(value)
    try:
        found: list[tuple[int, str]] | None = parse_ports(value, "[ports] x")
    except ParseError as exc:
        assert str(exc).startswith("[ports] x: ") and "\n" not in str(exc)
        found = None
    assert found == expected


def test_protocol_names_are_the_probe_s_table() -> None:
    assert names.STARTTLS_PORTS == dict(starttls.DEFAULT_PORTS)
    assert set(names.PROTOCOL_PORTS) == set(starttls.PROTOCOLS)
    assert known_protocols() == names.PROTOCOL_PORTS
    for port in range(1, 65536):
        assert protocol_for_port(port) == starttls.protocol_for_port(port)


def test_names_imports_nothing() -> None:
    source = (names.__file__ or "")
    with open(source, encoding="utf-8") as stream:
        text = stream.read()
    assert not re.search(r"^\s*(import|from)\s", text, re.M)


@pytest.mark.parametrize(("value", "message"), [
    ("443, 25/gopher", "[ports] Mail: unknown protocol 'gopher' (known: "),
    ("443 70000", "[ports] Mail: '70000': port must be a number from 1 to 65535"),
])
def test_a_bad_entry_names_the_lineage(value: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        ports_for_lineage({"ports": {"mail": value}}, "Mail")
    assert str(info.value).startswith(message)
