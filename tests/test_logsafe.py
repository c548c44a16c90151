"""The server log formatter: one record is one line, a traceback cannot forge one."""

from __future__ import annotations

import io
import logging

from certhook.server.logsafe import FORMAT, EscapingFormatter

FORGED = "2026-12-02 09:00:00,000 certhook.audit WARNING forged"


def _log(emit: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter(FORMAT))
    log = logging.getLogger("certhook.test-logsafe")
    log.propagate = False
    log.addHandler(handler)
    try:
        emit(log)  # type: ignore[operator]
    finally:
        log.removeHandler(handler)
    return stream.getvalue()


def test_message_and_args_are_one_line() -> None:
    out = _log(lambda log: log.warning("probe of %s: %s", f"a.example\n{FORGED}",
                                       "\x1b[2J\r\u202e"))
    assert out.count("\n") == 1 and out.endswith("\n")
    assert "a.example\\n2026-12-02" in out and "\\x1b[2J\\r\\u202e" in out


def test_traceback_lines_are_indented_and_escaped() -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise ValueError(f"bad name\n{FORGED}\x1b[2J")
        except ValueError:
            log.exception("auditing %s", "x.example")

    out = _log(emit)
    lines = out.rstrip("\n").split("\n")
    assert len(lines) > 3
    assert all(not line or line[0] == " " for line in lines[1:]), out
    assert not any(line.startswith(FORGED[:10]) for line in lines[1:])
    assert "\x1b" not in out and "\\x1b[2J" in out
    assert "  ValueError: bad name" in out and "  Traceback (most recent call last):" in out
