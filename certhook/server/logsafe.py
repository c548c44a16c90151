"""The server log's formatter: one record, one line, whatever a peer sent.

Log messages quote what peers sent: a served certificate's names, a
client's domain or id, a request line. A newline there forges a record, an
ESC sequence rewrites the terminal of whoever runs ``tail -f``. This
formatter escapes the message line (``certhook.escape.for_log``) and, in a
traceback, every control character; each traceback line is indented, so
only a record's first line starts at column 0 (an exception message with a
newline cannot pass for a record either).
"""

from __future__ import annotations

import logging

from certhook.escape import for_log

__all__ = ["FORMAT", "EscapingFormatter"]

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def _indented(text: str) -> str:
    lines = (for_log(line) for line in text.split("\n"))
    return "\n".join(line if not line or line[0] == " " else "  " + line for line in lines)


class EscapingFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose records cannot hold a raw control character."""

    def format(self, record: logging.LogRecord) -> str:
        # As logging.Formatter.format, but a traceback another handler
        # formatted (and cached raw in ``exc_text``) is formatted again.
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        parts = [self.formatMessage(record)]
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(_indented(record.exc_text))
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return "\n".join(parts)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return for_log(super().formatMessage(record))

    def formatException(self, ei: logging._SysExcInfoType) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))
