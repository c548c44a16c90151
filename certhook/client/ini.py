"""certhook's INI file (``/etc/certhook/certhook.conf``), read as ``configparser`` reads it.

Both the reporting client (``[client]``, ``[ports]``) and ``certhook probe
--conf`` (``[ports]``) read the file through :func:`read_ini`, so one file
means the same to both. It is not ``configparser`` because the certbot hook
reads the file on every renewal, and ``import configparser`` brings ``re``
and ``enum`` with it: ~8 ms of a hook whose whole budget is ~5 ms above a
bare interpreter start (bench/hook.py).

What a file may hold is what ``configparser.ConfigParser(interpolation=None)``
accepts with its other settings at their defaults, and a value reads the same
(tests/test_client_ini.py checks both against configparser itself):

- ``[name]`` section headers; names are case-sensitive, a second header of
  the same name is an error. Options of ``[DEFAULT]`` hold in every section
  that does not set them.
- ``key = value`` or ``key: value`` options: the key is everything before the
  first ``=`` or ``:``, lower-cased; the value is the rest, stripped. An
  option given twice in a section is an error.
- Comment lines: ``#`` or ``;`` as the first character that is not blank.
  A ``#`` after a value is part of the value (as in configparser).
- Continuation lines: a line indented deeper than its option's line carries
  on that option's value (a newline in between); blank lines inside a value
  are kept, blank lines at its end are not.
- No interpolation (``%`` is an ordinary character, API keys may hold one),
  no options without a value, nothing before the first section header but
  comments and blank lines.

Anything else is a :class:`~certhook.errors.ParseError` naming the line
number. No message quotes a value or a line that did not parse: either may
hold the API key (a duplicate names the key or section, as configparser does).
"""

from __future__ import annotations

from certhook.errors import LocalError, ParseError

__all__ = ["DEFAULT_SECTION", "parse_ini", "read_ini"]

DEFAULT_SECTION = "DEFAULT"
_COMMENT_PREFIXES = ("#", ";")


def _header(line: str) -> str | None:
    """The name in a ``[name]`` header line (already stripped), else None.

    configparser's ``\\[(?P<header>.+)\\]`` matched at the start: the name
    runs to the last ``]``, and whatever follows that is ignored. (Before
    Python 3.10 configparser ended the name at the first ``]``; a name
    holding a ``]`` is the only place where the two differ.)
    """
    if not line.startswith("["):
        return None
    close = line.rfind("]")
    return line[1:close] if close > 1 else None


def _delimiter(line: str) -> int:
    """The index of the first ``=`` or ``:`` in ``line``, -1 if none."""
    found = [index for index in (line.find("="), line.find(":")) if index >= 0]
    return min(found) if found else -1


def parse_ini(text: str, source: str | None = None) -> dict[str, dict[str, str]]:
    """Section name -> {lower-cased key -> value}, for every section but ``DEFAULT``.

    ``text`` is split at ``\\n`` only (as ``configparser.read_string`` does);
    :func:`read_ini` reads files with universal newlines first. Keys are
    lower-cased: look them up lower-cased. ParseError if the text is not in
    the subset described in the module docstring.
    """
    defaults: dict[str, list[str]] = {}
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None  # the section being read
    section = ""
    given: set[tuple[str, str]] = set()  # (section, key) pairs read so far
    key: str | None = None  # the option a continuation line would extend
    indent = 0  # of the latest header or option line
    for number, line in enumerate(text.split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith(_COMMENT_PREFIXES):
            continue
        if not stripped:
            if current is not None and key is not None:
                current[key].append("")  # kept only if more of the value follows
            continue
        depth = len(line) - len(line.lstrip())
        if current is not None and key is not None and depth > indent:
            current[key].append(stripped)
            continue
        indent = depth
        name = _header(stripped)
        if name is not None:
            if name == DEFAULT_SECTION:
                current = defaults  # may be opened again, unlike the others
            elif name in sections:
                raise ParseError(f"line {number}: section [{name}] given twice", source)
            else:
                current = sections[name] = {}
            section, key = name, None
            continue
        if current is None:
            raise ParseError(f"line {number}: a [section] header must come first", source)
        cut = _delimiter(stripped)
        if cut <= 0:
            raise ParseError(f"line {number}: neither 'key = value' nor a [section] header",
                             source)
        key = stripped[:cut].rstrip().lower()
        if (section, key) in given:
            raise ParseError(f"line {number}: {key!r} given twice in [{section}]", source)
        given.add((section, key))
        current[key] = [stripped[cut + 1:].strip()]

    def joined(options: dict[str, list[str]]) -> dict[str, str]:
        return {option: "\n".join(lines).rstrip() for option, lines in options.items()}

    common = joined(defaults)
    return {title: {**common, **joined(options)} for title, options in sections.items()}


def read_ini(path: str, required: bool = True) -> dict[str, dict[str, str]] | None:
    """:func:`parse_ini` of a file, or None if it does not exist and is not ``required``.

    LocalError if it cannot be read (or, ``required``, does not exist);
    ParseError if it is not UTF-8 or not in the subset.
    """
    try:
        with open(path, encoding="utf-8") as stream:  # universal newlines, as configparser
            text = stream.read()
    except FileNotFoundError:
        if required:
            raise LocalError(f"{path}: configuration file not found") from None
        return None
    except OSError as exc:
        raise LocalError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ParseError(f"not UTF-8 (byte {exc.start})", path) from None
    return parse_ini(text, path)
