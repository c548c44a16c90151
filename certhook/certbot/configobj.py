"""Parse the configobj subset in which certbot writes renewal confs.

certbot stores each lineage in ``renewal/NAME.conf``, written and read with
the ``configobj`` library (``ConfigObj(path, encoding="utf-8")``, lists on,
interpolation on). This module reads the same files with the standard
library. Grammar, one line at a time (certbot reads the file in binary and
splits at ``\\n`` only, then strips trailing ``\\r`` and ``\\n``)::

    blank or "# comment"
    [name]  [[name]]  [[[name]]] ...    # "[" count = depth; optional "# comment"
    key = value                         # key: up to the first "=", or quoted
    value   := ""                       # empty -> ''
             | ","                      # a lone comma -> []
             | item ("," item)* [","]   # one item -> str; any comma -> list
             | ''' ... '''  | \"\"\" ... \"\"\"   # triple quotes, may span lines
    item    := "..." | '...' | unquoted # no escapes; unquoted is stripped
                                        # and ends at "," or "#"

Everything this parser accepts, configobj accepts and reads as the same
dict (the test suite checks it against configobj with hypothesis). Where
configobj's regular expressions backtrack into surprising readings, this
parser raises :class:`~certhook.errors.ParseError` instead: a quote that
closes and is followed by text (configobj reads ``"a"b"`` as ``a"b``), a
line starting with ``[`` that is not a section header, an empty key, and a
comment after a quoted item that holds that item's quote followed by a comma.
configobj's lazy ``'.*?'`` stretches the quote over the comment whenever that
makes a list item (it reads ``k = ''#',`` as ``["'#"]``, not ``''``); telling
exactly when it does means replaying its backtracking, so every such comment
is refused. certbot's own comments are whole lines ("# Options used in the
renewal process"); only a hand edit puts a comment after a value (certbot
keeps it when it rewrites the file), so only a hand edit meets a refusal.
Values are returned verbatim: configobj's ``%(name)s`` interpolation, which
certbot gets on item access, is not applied.
"""

from __future__ import annotations

import re
from typing import Union

from certhook.errors import ParseError

__all__ = ["Section", "Value", "parse_configobj"]

Value = Union[str, list[str], "Section"]
Section = dict[str, Value]

_QUOTES = "'\""
_TRIPLES = ("'''", '"""')
# What may follow a section name: one or more "]" with optional blanks
# between, then an optional comment.
_SECTION_TAIL = re.compile(r"(?:\s*\])+\s*(?:#.*)?")
# A quote, blanks, a comma: in a comment after an item quoted with that quote,
# configobj's list-item pattern ('.*?' then \s*,) reads the comment into it.
_QUOTE_COMMA = {quote: re.compile(re.escape(quote) + r"\s*,") for quote in _QUOTES}


class _LineError(Exception):
    """A fault on the current line; the caller adds source and line number."""


def parse_configobj(text: str, source: str) -> Section:
    """Parse a renewal conf into nested dicts, keeping the file's order.

    Scalars are ``str``, comma lists ``list[str]``, sections ``dict``.
    Duplicate keys or sections, unbalanced brackets, a section more than
    one level deeper than its parent, an unterminated quote, text after a
    closing quote and a line without ``=`` raise :class:`ParseError`
    naming ``source`` and the line number.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = [line.rstrip("\r\n") for line in text.split("\n")]
    root: Section = {}
    # stack[d] is the open section at depth d; stack[0] is the root.
    stack: list[Section] = [root]
    index = 0
    while index < len(lines):
        start = index
        line = lines[index].lstrip()
        stripped = line.rstrip()
        index += 1
        if not stripped or stripped.startswith("#"):
            continue
        try:
            if stripped.startswith("["):
                _open_section(stripped, stack)
                continue
            # Not ``stripped``: a triple-quoted value keeps its trailing blanks.
            key, rest = _split_key(line)
            value: Value
            if rest[:3] in _TRIPLES:
                value, index = _triple_quoted(rest, lines, index)
            else:
                value = _parse_value(rest)
            section = stack[-1]
            if key in section:
                raise _LineError(f"duplicate key {key!r}")
            section[key] = value
        except _LineError as exc:
            raise ParseError(f"line {start + 1}: {exc}", source) from None
    return root


def _open_section(line: str, stack: list[Section]) -> None:
    depth = 0
    pos = 0
    while pos < len(line) and (line[pos] == "[" or line[pos].isspace()):
        depth += line[pos] == "["
        pos += 1
    body = line[pos:]
    if not body:
        raise _LineError("section header without a name")
    if body[0] in _QUOTES:
        end = body.find(body[0], 1)
        if end < 0:
            raise _LineError("unterminated quote in section name")
        name, tail = body[1:end], body[end + 1 :]
        if not name.strip():
            raise _LineError("empty section name")
        if not _SECTION_TAIL.fullmatch(tail):
            raise _LineError("text after the closing quote of a section name")
    else:
        # The name runs to the first "]" after which only "]"s, blanks and a
        # comment remain: "[a] b]" names "a] b", "[a] # c" names "a".
        name = tail = ""
        for end in range(1, len(body)):
            if (body[end] == "]" or body[end].isspace()) and _SECTION_TAIL.fullmatch(
                body, end
            ):
                name, tail = body[:end], body[end:]
                break
        if not name:
            raise _LineError("unbalanced brackets in section header")
    closing = tail.split("#", 1)[0].count("]")
    if closing != depth:
        raise _LineError(f"unbalanced brackets: {depth} '[' but {closing} ']'")
    if depth > len(stack):
        raise _LineError(f"section {name!r} is nested more than one level deeper")
    del stack[depth:]
    parent = stack[-1]
    if name in parent:
        raise _LineError(f"duplicate section {name!r}")
    section: Section = {}
    parent[name] = section
    stack.append(section)


def _split_key(line: str) -> tuple[str, str]:
    """Split ``key = value``; the value comes back with leading blanks removed."""
    if line[0] in _QUOTES:
        end = line.find(line[0], 1)
        if end < 0:
            raise _LineError("unterminated quote in key")
        key, rest = line[1:end], line[end + 1 :].lstrip()
        if not rest.startswith("="):
            raise _LineError("expected '=' after the quoted key")
        return key, rest[1:].lstrip()
    equals = line.find("=")
    if equals < 0:
        raise _LineError("expected 'key = value' or a [section] header")
    if equals == 0:
        raise _LineError("missing key before '='")
    return line[:equals].rstrip(), line[equals + 1 :].lstrip()


def _is_tail(text: str) -> bool:
    """Whether ``text`` is only blanks and an optional comment."""
    rest = text.lstrip()
    return not rest or rest.startswith("#")


def _triple_quoted(rest: str, lines: list[str], index: int) -> tuple[str, int]:
    quote, body = rest[:3], rest[3:]
    end = body.find(quote)
    if end >= 0:
        if not _is_tail(body[end + 3 :]):
            raise _LineError("text after the closing triple quote")
        return body[:end], index
    parts = [body]
    while index < len(lines):
        line = lines[index]
        index += 1
        end = line.find(quote)
        if end < 0:
            parts.append(line)
            continue
        if not _is_tail(line[end + 3 :]):
            raise _LineError(f"text after the closing triple quote on line {index}")
        parts.append(line[:end])
        return "\n".join(parts), index
    raise _LineError(f"unterminated {quote} value")


def _parse_value(text: str) -> str | list[str]:
    """Parse a one-line value (leading blanks already removed)."""
    if _is_tail(text):
        return ""
    if text.startswith(","):
        if not _is_tail(text[1:]):
            raise _LineError("a value may not start with ','")
        return []
    items: list[str] = []
    quotes: set[str] = set()  # the quotes of the quoted items
    is_list = False
    pos, size = 0, len(text)
    while True:
        char = text[pos]
        if char in _QUOTES:
            end = text.find(char, pos + 1)
            if end < 0:
                raise _LineError("unterminated quote")
            items.append(text[pos + 1 : end])
            quotes.add(char)
            pos = _skip_blanks(text, end + 1)
            if pos < size and text[pos] not in ",#":
                raise _LineError("text after a closing quote")
        elif char == ",":
            raise _LineError("empty item in a list")
        else:
            end = pos
            while end < size and text[end] not in ",#":
                end += 1
            items.append(text[pos:end].rstrip())
            pos = end
        if pos >= size or text[pos] == "#":
            break
        is_list = True  # text[pos] == ","
        pos = _skip_blanks(text, pos + 1)
        if pos >= size or text[pos] == "#":
            break
    if any(_QUOTE_COMMA[quote].search(text, pos) for quote in quotes):
        raise _LineError("a comment after a quoted item holds its quote and a comma"
                         " (configobj would read the comment into the value)")
    return items if is_list else items[0]


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos
