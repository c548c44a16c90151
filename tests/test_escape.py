"""certhook.escape: what a peer's string looks like at each sink."""

from __future__ import annotations

import subprocess
import sys
import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certhook.escape import for_header, for_html, for_log, for_terminal, visible

CASES = [
    ("www.example.org", "www.example.org"),
    ("a b", "a b"),
    ("évian.example", "évian.example"),  # printable non-ASCII is kept
    ("x\ny", "x\\ny"),
    ("x\r\ny", "x\\r\\ny"),
    ("x\ty", "x\\ty"),
    ("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),  # clear screen
    ("\x00\x7f", "\\x00\\x7f"),
    ("\x85\x9b", "\\x85\\x9b"),  # C1: NEL, CSI
    ("abc\u202egro.elpmaxe", "abc\\u202egro.elpmaxe"),  # right-to-left override
    ("a\u200bb\ufeff", "a\\u200bb\\ufeff"),  # zero-width space, BOM (Cf)
    ("a\u2028b\u2029", "a\\u2028b\\u2029"),  # line and paragraph separator
    ("a\xa0b", "a\\xa0b"),  # no-break space
    ("\U000e0001", "\\U000e0001"),  # language tag (Cf, astral)
    ("\udcff", "\\udcff"),  # a lone surrogate would break the UTF-8 writer
    ("C:\\x1b", "C:\\x1b"),  # a backslash is not escaped: escaping twice is escaping once
]


@pytest.mark.parametrize(("raw", "shown"), CASES)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert for_log(raw) == for_terminal(raw) == for_header(raw) == shown


_DANGEROUS = ("Cc", "Cf", "Cs", "Zl", "Zp")


@given(st.text())
@example("\x1b]0;title\x07")
@example("\u061c\u2066\u2069")
def test_nothing_dangerous_survives(text: str) -> None:
    shown = visible(text)
    assert not any(unicodedata.category(c) in _DANGEROUS for c in shown)
    assert visible(shown) == shown  # idempotent
    shown.encode("utf-8")  # never raises: no lone surrogate left


def test_header_cut_never_splits_an_escape() -> None:
    assert for_header("ab\x1bcd", limit=4) == "ab"
    assert for_header("ab\x1bcd", limit=6) == "ab\\x1b"
    assert for_header("abcdef", limit=3) == "abc"
    assert for_header("ab\u202e", limit=7) == "ab"


def test_html() -> None:
    assert for_html('<b a="1">\x1b&') == "&lt;b a=&quot;1&quot;&gt;\\x1b&amp;"


def test_import_is_cheap() -> None:
    # The probe and the client import this: it must not drag in other modules.
    code = ("import sys; before = set(sys.modules); import certhook.escape; "
            "print(sorted(set(sys.modules) - before - {'certhook', 'certhook.escape'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
