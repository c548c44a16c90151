"""Escapers for text that came from a peer: a certificate, a client, a server's reply.

A certificate's subject or SAN may carry any character: a newline forges a
log line or a stored reason, CR LF breaks (or injects) a mail header, ESC
starts a terminal control sequence (clear the screen, retitle the window),
U+202E reverses the text shown after it. Each sink escapes what it shows,
right where it shows it:

* :func:`for_log` for one log record's message,
* :func:`for_terminal` for a value printed on a terminal,
* :func:`for_header` for a mail header (the subject),
* :func:`for_html` for the report page.

The rule is one: every character ``str.isprintable`` rejects is shown as a
Python-style escape (``\\n``, ``\\x1b``, ``\\u202e``). That set is a superset
of the control (Cc), format (Cf, bidi overrides and zero-width characters
among them), line and paragraph separator (Zl, Zp) and surrogate (Cs)
categories; it also shows spaces other than U+0020 (a no-break space in a
host name is a spoofing device). The backslash itself is not escaped, so an
escaper applied twice gives the same text as once: a value escaped where it
was stored comes out unchanged at a sink that escapes again.

Standard library only, and nothing imported at module load: the probe's
output and the hook path import this.
"""

from __future__ import annotations

__all__ = ["for_header", "for_html", "for_log", "for_terminal", "visible"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` on one line, every non-printable character shown as an escape."""
    if text.isprintable():  # the common case: no copy, no loop
        return text
    return "".join(char if char.isprintable() else _escape_char(char) for char in text)


def for_log(text: object) -> str:
    """A log message: one line, no control or format characters."""
    return visible(str(text))


def for_terminal(text: object) -> str:
    """A value printed on a terminal: no escape sequence, no line break, no bidi override."""
    return visible(str(text))


def for_header(text: object, limit: int = 0) -> str:
    """A mail header value: no CR or LF (header injection), cut to ``limit`` if given.

    The cut never splits an escape: a cut escape would read as a different
    character.
    """
    shown = visible(str(text))
    if limit and len(shown) > limit:
        cut = shown[:limit]
        tail = cut.rfind("\\")
        if tail != -1 and tail >= limit - 10 and _split_escape(shown, tail, limit):
            cut = cut[:tail]
        shown = cut
    return shown


def _split_escape(shown: str, start: int, limit: int) -> bool:
    """Whether an escape made by :func:`visible` begins at ``start`` and runs past ``limit``."""
    kind = shown[start + 1:start + 2]
    size = {"x": 4, "u": 6, "U": 10, "n": 2, "r": 2, "t": 2}.get(kind)
    return size is not None and start + size > limit


def for_html(text: object) -> str:
    """HTML text or attribute value: markup escaped, and control characters made visible."""
    import html

    return html.escape(visible(str(text)))
