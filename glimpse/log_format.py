"""How every glimpse process writes its log: one record is one line, whatever a client sent.

Request paths, ids and header values reach log records (the request line, error texts,
tracebacks). A CR/LF among them would let a client start a line of its own that looks like a
record. So the formatter, not each call site, escapes control characters in the record's line
and indents every continuation line of a traceback; a line that starts at column 0 is always
the start of a real record. URL credentials are redacted too, as a safety net for any that
reached a message (see glimpse.redaction).
"""

from __future__ import annotations

import logging
import logging.config
import re
from typing import Any

from glimpse.redaction import redact_urls

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
CONTINUATION = "    "  # the prefix of every line of a record after its first
# C0, DEL, C1, and the Unicode line and paragraph separators some viewers break lines at.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_controls(text: str) -> str:
    """``text`` with each control character written as a backslash escape (``\\r``,
    ``\\x1b``, ``\\u2028``): printable, and never a line break."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"


class EscapingFormatter(logging.Formatter):
    """A Formatter whose output can be split into records at the lines that start at
    column 0: the record's own line has no line break, every later line (traceback, stack)
    is indented."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        if self.usesTime():
            record.asctime = self.formatTime(record, self.datefmt)
        first = redact_urls(escape_controls(self.formatMessage(record)))
        # Formatted here, not taken from record.exc_text: another handler's formatter may
        # have left its own unescaped text there.
        rest = []
        if record.exc_info:
            rest.append(self.formatException(record.exc_info))
        elif record.exc_text:
            rest.append(record.exc_text)
        if record.stack_info:
            rest.append(self.formatStack(record.stack_info))
        lines = [first]
        for block in rest:
            lines.extend(
                CONTINUATION + redact_urls(escape_controls(line)) for line in block.split("\n")
            )
        return "\n".join(lines)


def logging_config(level: str) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` configuration of a glimpse process at ``level``
    (``debug``, ``info``...). Handed to uvicorn as its ``log_config`` too, so uvicorn's own
    records and those of every worker process it starts go the same way."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "glimpse": {"()": f"{__name__}.{EscapingFormatter.__name__}", "fmt": FORMAT}
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "glimpse",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "alembic": {"level": "WARNING"},
            # uvicorn's records propagate to the root's handler: no handler of their own.
            "uvicorn": {"handlers": [], "propagate": True},
        },
    }


def configure(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
