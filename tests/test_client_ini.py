"""certhook.client.ini against hand-made cases and against configparser itself.

The reader promises: any text gives a mapping or ParseError (never another
exception), and whenever configparser (``interpolation=None``, defaults
otherwise) reads a text, the reader gives the same sections, keys and
values; whenever configparser refuses one, so does the reader.
"""

from __future__ import annotations

import configparser
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from certhook.client.ini import parse_ini, read_ini, unknown_names
from certhook.errors import LocalError, ParseError

KEY = "ck_Secret-Key%value"

# configparser before Python 3.10 ended a section name at its first "]"; the
# reader, like configparser since, at the last one ("[a]b]" is section "a]b").
OLD_HEADERS = sys.version_info < (3, 10)


def oracle(text: str) -> dict[str, dict[str, str]] | None:
    """What configparser makes of ``text``; None if it refuses it."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    return {name: dict(parser[name]) for name in parser.sections()}


def parse(text: str) -> dict[str, dict[str, str]] | None:
    try:
        return parse_ini(text, "certhook.conf")
    except ParseError:
        return None


GOOD = [
    ("", {}),
    ("# only a comment\n\n; and another\n", {}),
    ("[client]\n", {"client": {}}),
    ("[client]\nserver = tcp://a:1\n", {"client": {"server": "tcp://a:1"}}),
    ("[client]\nserver=tcp://a:1", {"client": {"server": "tcp://a:1"}}),
    ("[client]\nserver: tcp://a:1\n", {"client": {"server": "tcp://a:1"}}),
    ("[client]\nurl = https://a:8023/x\n", {"client": {"url": "https://a:8023/x"}}),
    ("[client]\nk : v = w\n", {"client": {"k": "v = w"}}),
    ("[client]\nk = \n", {"client": {"k": ""}}),
    ("[client]\nAPI_Key = X\n", {"client": {"api_key": "X"}}),
    ("[Client]\nk = v\n", {"Client": {"k": "v"}}),
    ("[client]\n  k = v  \n", {"client": {"k": "v"}}),
    ("[client]\nk = v # not a comment\n", {"client": {"k": "v # not a comment"}}),
    (f"[client]\napi_key = {KEY}\n", {"client": {"api_key": KEY}}),  # no interpolation
    ("[client]\nk = a,\n  b,\n\n  c\n\n\n", {"client": {"k": "a,\nb,\n\nc"}}),
    ("[client]\nk = a\n  # a comment, not part of the value\n  b\n", {"client": {"k": "a\nb"}}),
    ("[client]\nk =\n  a\n", {"client": {"k": "\na"}}),
    ("[client]\n  k = v\n w = x\n", {"client": {"k": "v", "w": "x"}}),
    ("[client]\nk = v\n  [ports]\n", {"client": {"k": "v\n[ports]"}}),
    ("[a]\nk = 1\n[b]\nk = 2\n", {"a": {"k": "1"}, "b": {"k": "2"}}),
    ("[a] trailing words\nk = 1\n", {"a": {"k": "1"}}),
    ("[a]]\n", {"a]": {}}),
    ("[DEFAULT]\nk = d\nj = d\n[a]\nk = 1\n", {"a": {"k": "1", "j": "d"}}),
    ("[DEFAULT]\nk = d\n[DEFAULT]\nj = d\n[a]\n", {"a": {"k": "d", "j": "d"}}),
    ("[a]\r\nk = v\r\n", {"a": {"k": "v"}}),
]

BAD = [
    ("k = v\n", "header must come first"),
    ("[client\nk = v\n", "header must come first"),
    ("[]\n", "header must come first"),
    ("[a]\njust words\n", "neither"),
    ("[a]\n= v\n", "neither"),
    ("[a]\n[a]\n", "given twice"),
    ("[a]\nk = 1\nK = 2\n", "given twice"),
    ("[DEFAULT]\nk = 1\n[DEFAULT]\nk = 2\n", "given twice"),
    ("\ufeff[a]\n", "header must come first"),  # configparser keeps the BOM too
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_reads_as_configparser_does(text: str, expected: dict[str, dict[str, str]]) -> None:
    assert parse_ini(text) == expected
    if not (OLD_HEADERS and text.startswith("[a]]")):
        assert oracle(text) == expected  # the table itself is right


@pytest.mark.parametrize(("text", "message"), BAD)
def test_refuses_what_configparser_refuses(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as info:
        parse_ini(text, "certhook.conf")
    assert str(info.value).startswith("certhook.conf: line ")
    assert oracle(text) is None


def test_errors_name_the_line_but_never_quote_it() -> None:
    with pytest.raises(ParseError) as info:
        parse_ini(f"[client]\nserver = tcp://a:1\napi_key {KEY}\n", "c.conf")
    assert str(info.value) == ("c.conf: line 3: neither 'key = value' nor a [section]"
                               " header")
    with pytest.raises(ParseError) as info:
        parse_ini(f"api_key = {KEY}\n", "c.conf")
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_a_file_reads_the_same_with_any_line_ending_and_trailing_lines(
        tmp_path: Path, text: str, expected: dict[str, dict[str, str]]) -> None:
    path = tmp_path / "certhook.conf"
    for ending in ("\n", "\r\n", "\r"):
        for tail in ("", "\n\n", "\n# trailing comment\n", "\n; another\n   \n"):
            path.write_bytes((text.replace("\r\n", "\n") + tail).replace("\n", ending).encode())
            assert read_ini(str(path)) == expected, (ending, tail)


def test_read_ini_files(tmp_path: Path) -> None:
    missing = str(tmp_path / "none.conf")
    assert read_ini(missing, required=False) is None
    with pytest.raises(LocalError, match="configuration file not found"):
        read_ini(missing)
    with pytest.raises(LocalError, match=str(tmp_path)):
        read_ini(str(tmp_path))  # a directory
    path = tmp_path / "latin1.conf"
    path.write_bytes(b"[client]\nk = caf\xe9\n")
    with pytest.raises(ParseError, match="not UTF-8"):
        read_ini(str(path))
    path.write_text("[client]\nk = café\n", encoding="utf-8")
    assert read_ini(str(path)) == {"client": {"k": "café"}}


# Texts made line by line of what INI files are made of (headers, options
# with either delimiter, comments, blank and indented lines), with odd
# whitespace and line breaks mixed in, so that most of them mean something;
# and any text at all.
_SPACE = st.sampled_from(["", " ", "  ", "\t", "\x0b", "\x1c", "\u00a0", "\u2028", "\x85", "\r"])
_WORD = st.sampled_from(["server", "Server", "api_key", "k", "K", "v", "tcp://h:1", "%(x)s", "a b",
                         "é", "[x]", "#", "x;y", ""])
_HEADER = st.builds(lambda name, tail: f"[{name}]{tail}",
                    st.sampled_from(["client", "ports", "DEFAULT", "Client", "a]b", "", "["]),
                    st.sampled_from(["", " x", "]"]))
_OPTION = st.builds(lambda key, gap1, delim, gap2, value: f"{key}{gap1}{delim}{gap2}{value}",
                    _WORD, _SPACE, st.sampled_from(["=", ":", "=", ":", "= :", ""]), _SPACE, _WORD)
_COMMENT = st.builds(lambda mark, text: mark + text, st.sampled_from(["#", ";", "# "]), _WORD)
_BODY = st.one_of(_OPTION, _OPTION, _OPTION, _HEADER, _COMMENT, st.just(""), _WORD)
_LINE = st.builds(lambda indent, body, end: indent + body + end,
                  st.one_of(st.just(""), _SPACE), _BODY, st.one_of(st.just(""), _SPACE))
_INI_TEXT = st.builds(lambda first, lines: "\n".join([first, *lines]),
                      st.one_of(_HEADER, _LINE), st.lists(_LINE, max_size=12))


@given(_INI_TEXT | st.text(max_size=60))
@example("[a]\nk = v\n\x1ck2 = w\n")
@example("[a]\nk = v\n\u00a0 w\n")
@example("[a]\nk = v\n \x85\n")
@example("[a]\n\x0b\n")
@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.skipif(OLD_HEADERS, reason="configparser before 3.10 reads [a]b] differently")
def test_same_as_configparser(text: str) -> None:
    assert parse(text) == oracle(text)


@given(st.text(max_size=80))
def test_any_text_gives_a_mapping_or_parse_error(text: str) -> None:
    try:
        sections = parse_ini(text, "x.conf")
    except ParseError as exc:
        assert str(exc).startswith("x.conf: line ") and "\n" not in str(exc)
        return
    for options in sections.values():
        assert all(key == key.lower() for key in options)


@given(_INI_TEXT | st.text(max_size=80))
@example("[clinet\u2028]\nk = v\n")
@example("[DEFAULT]\nsever = x\n[a\x85b]\n")
def test_unknown_names_are_one_printable_line_each_with_their_line(text: str) -> None:
    try:
        ini = parse_ini(text, "x.conf")
    except ParseError:
        return
    known = {"client": ("server", "api_key"), "ports": None}
    warnings = unknown_names(ini, known)
    for warning in warnings:
        assert warning.startswith("x.conf: line ") and warning.isprintable()
    lines = [int(w.split()[2].rstrip(":")) for w in warnings]
    assert lines == sorted(lines)
    expected = sum(1 for section in ini if section not in known) + sum(
        1 for (section, key) in ini.lines
        if key and section in ("client", "DEFAULT") and key not in ("server", "api_key"))
    assert len(warnings) == expected
