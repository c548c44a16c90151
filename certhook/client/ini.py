"""certhook's INI file (``/etc/certhook/certhook.conf``), read as ``configparser`` reads it.

Both the reporting client (``[client]``, ``[ports]``) and ``certhook probe
--conf`` (``[ports]``) read the file through :func:`read_ini`, so one file
means the same to both; the audit server reads its own file through it too.
It is not ``configparser`` because the certbot hook reads the file on every
renewal, and ``import configparser`` brings ``re`` and ``enum`` with it:
~8 ms of a hook whose whole budget is ~5 ms above a bare interpreter start
(bench/hook.py).

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

What a program does not know in a file that parses is for
:func:`unknown_names` to say: one warning per unknown section or key, with
its line and the nearest known name.
"""

from __future__ import annotations

from certhook.errors import LocalError, ParseError

TYPE_CHECKING = False  # typing costs ~2 ms at start-up; mypy reads this name specially
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = ["DEFAULT_SECTION", "Ini", "nearest", "parse_ini", "read_ini", "unknown_names"]

DEFAULT_SECTION = "DEFAULT"
_COMMENT_PREFIXES = ("#", ";")


class Ini(dict[str, dict[str, str]]):
    """What :func:`parse_ini` read: section -> {key -> value}, and where.

    ``lines[(section, key)]`` is the line a key was given on, in that
    section or in ``DEFAULT``; ``lines[(section, "")]`` the line of a
    section's header. ``source`` names the file, for messages.
    """

    __slots__ = ("lines", "source")

    def __init__(self, sections: Mapping[str, dict[str, str]] | None = None,
                 source: str | None = None,
                 lines: Mapping[tuple[str, str], int] | None = None) -> None:
        super().__init__(sections or {})
        self.source = source
        self.lines = dict(lines or {})

    def where(self, section: str, key: str = "") -> str:
        """``SOURCE: line N`` for a key (or, without one, a section header)."""
        number = self.lines.get((section, key)) or self.lines.get((DEFAULT_SECTION, key))
        place = f"line {number}" if number else f"[{section}]"
        return f"{self.source}: {place}" if self.source else place


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


def parse_ini(text: str, source: str | None = None) -> Ini:
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
    given: dict[tuple[str, str], int] = {}  # (section, key or "" for the header) -> line
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
            given.setdefault((name, ""), number)
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
        given[(section, key)] = number
        current[key] = [stripped[cut + 1:].strip()]

    def joined(options: dict[str, list[str]]) -> dict[str, str]:
        return {option: "\n".join(lines).rstrip() for option, lines in options.items()}

    common = joined(defaults)
    return Ini({title: {**common, **joined(options)} for title, options in sections.items()},
               source, given)


def read_ini(path: str, required: bool = True) -> Ini | None:
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


def nearest(word: str, choices: Iterable[str]) -> str | None:
    """The choice most like ``word`` (difflib's measure), None if none is close."""
    import difflib  # only when there is something to warn about: not on the hook's path

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _shown(name: str) -> str:
    return repr(name if len(name) <= 40 else name[:37] + "...")


def _section_shown(name: str) -> str:
    """A section name for a one-line message: cut, control characters escaped."""
    name = name if len(name) <= 40 else name[:37] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def _section_hint(name: str, known: Collection[str]) -> str:
    """``did you mean [x]?``, or the known sections. A known name ending in
    `` NAME`` (``account NAME``) stands for every name with that first word."""
    head, blank, rest = name.partition(" ")
    patterns = {k[: -len(" NAME")]: k for k in known if k.endswith(" NAME")}
    guess = nearest(head, patterns) if blank and rest.strip() else None
    guess = f"{guess} {rest.strip()}" if guess else nearest(name, [
        k for k in known if not k.endswith(" NAME")])
    if guess:
        return f"did you mean [{_section_shown(guess)}]?"
    return "known: " + ", ".join(f"[{k}]" for k in known)


def unknown_names(ini: Ini, known: Mapping[str, Collection[str] | None],
                  kind: Callable[[str], str] | None = None) -> list[str]:
    """One warning per section and per key of ``ini`` that ``known`` does not know.

    ``known`` maps a section to its keys (the tables that read them), or to
    None if any key goes (``[ports]``: lineage names, checked elsewhere); ``kind``
    maps a section name to its entry in ``known`` (``account alice`` to
    ``account NAME``). A key of ``DEFAULT`` is known if some section knows
    it. Each warning names the file, the line and the nearest known name,
    never a value; in the order of the lines.
    """
    found: list[tuple[int, str]] = []
    every_key = list(dict.fromkeys(key for keys in known.values() for key in keys or ()))
    for section in [*ini, DEFAULT_SECTION]:
        header = ini.lines.get((section, ""))
        if header is None:
            continue  # a DEFAULT never opened
        keys: Collection[str] = every_key
        if section != DEFAULT_SECTION:
            entry = (kind or str)(section)
            if entry not in known:
                hint = _section_hint(section, list(known))
                found.append((header, f"{ini.where(section)}: unknown section"
                                      f" [{_section_shown(section)}], ignored ({hint})"))
                continue
            if known[entry] is None:
                continue
            keys = known[entry] or ()
        for (where, key), number in ini.lines.items():
            if where != section or not key or key in keys:
                continue
            guess = nearest(key, keys)
            hint = f"did you mean {guess!r}?" if guess else "known: " + ", ".join(keys)
            found.append((number, f"{ini.where(section, key)}: unknown key {_shown(key)}"
                                  f" in [{_section_shown(section)}], ignored ({hint})"))
    return [message for _, message in sorted(found)]
