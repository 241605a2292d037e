"""How every glimpse process writes its log: one record is one line, whatever a client sent.

Request paths, ids and header values reach log records (the request line, error texts,
tracebacks). A CR/LF among them would let a client start a line of its own that looks like a
record. So the formatter, not each call site, escapes control characters in the record's line
and indents every continuation line of a traceback; a line that starts at column 0 is always
the start of a real record. URL credentials are redacted too, as a safety net for any that
reached a message (see glimpse.redaction).

The setting ``log_format = "json"`` writes each record as one JSON object instead, for log
collectors: JSON's own escaping keeps a record on one line (control characters and U+2028/9
are written as ``\\uNNNN``), and every record carries the request id and the global request
id (``X-OpenStack-Request-ID`` from nova or cinder) of the request it was written for, or null.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import json
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
FORMATS = ("text", "json")


@dataclasses.dataclass(frozen=True)
class RequestIds:
    """The ids of the request a record is written for."""

    local: str  # glimpse's own "req-<uuid>", answered in X-OpenStack-Request-ID
    global_id: str | None  # the caller's X-OpenStack-Request-ID, when it is a valid one


# Set by the ASGI core for the length of a request; worker threads inherit it (anyio copies
# the context into the threads it runs handlers in).
REQUEST_IDS: contextvars.ContextVar[RequestIds | None] = contextvars.ContextVar(
    "glimpse_request_ids", default=None)


def escape_controls(text: str) -> str:
    """``text`` with each control character written as a backslash escape (``\\r``,
    ``\\x1b``, ``\\u2028``): printable, and never a line break."""
    # Every character the pattern finds is one isprintable() refuses (C0 and C1 controls,
    # DEL, the separators): a printable text, as nearly every record's is, needs no search.
    if text.isprintable():
        return text
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


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line: time (UTC, ISO 8601), level, logger,
    message, request_id, global_request_id, process, and exception or stack when there is
    one. URL credentials are redacted as in the text form."""

    def format(self, record: logging.LogRecord) -> str:
        ids = REQUEST_IDS.get()
        when = dt.datetime.fromtimestamp(record.created, dt.UTC)
        document: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            # Escaped as the text form's line is: a reader that prints the decoded message
            # still sees one line.
            "message": redact_urls(escape_controls(record.getMessage())),
            "request_id": ids.local if ids else None,
            "global_request_id": ids.global_id if ids else None,
            "process": record.process,
        }
        if record.exc_info:
            document["exception"] = redact_urls(self.formatException(record.exc_info))
        elif record.exc_text:
            document["exception"] = redact_urls(record.exc_text)
        if record.stack_info:
            document["stack"] = redact_urls(self.formatStack(record.stack_info))
        # ensure_ascii: every control character and line separator is a \\u escape.
        return json.dumps(document, ensure_ascii=True)


def logging_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """The ``logging.config.dictConfig`` configuration of a glimpse process at ``level``
    (``debug``, ``info``...) writing ``log_format`` ("text" or "json"). Handed to uvicorn as
    its ``log_config`` too, so uvicorn's own records and those of every worker process it
    starts go the same way."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.{JsonFormatter.__name__}"} if log_format == "json"
        else {"()": f"{__name__}.{EscapingFormatter.__name__}", "fmt": FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"glimpse": formatter},
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


def configure(level: str, log_format: str = "text") -> None:
    logging.config.dictConfig(logging_config(level, log_format))
