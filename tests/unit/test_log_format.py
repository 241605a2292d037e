"""Tests for glimpse.log_format: one record is one line, whatever a client sent."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from collections.abc import Iterator

import pytest

from glimpse.log_format import FORMAT, EscapingFormatter, escape_controls

RECORD_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ \S+ ")
FORGED = "\r\n2001-01-01 00:00:00,000 INFO glimpse.request forged"


@pytest.fixture
def log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger of its own writing through the formatter into a string."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(EscapingFormatter(FORMAT))
    logger = logging.getLogger("test.log_format")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.removeHandler(handler)


def _records(out: io.StringIO) -> list[str]:
    """The text split where a record starts: at each line that does not begin indented."""
    records: list[str] = []
    for line in out.getvalue().splitlines():
        if line.startswith(" "):
            assert records, "a continuation line before any record"
            records[-1] += "\n" + line
        else:
            assert RECORD_START.match(line), f"not a record start: {line!r}"
            records.append(line)
    return records


@pytest.mark.parametrize(("text", "escaped"), [
    ("a\r\nb", "a\\r\\nb"),
    ("a\nb\rc\td", "a\\nb\\rc\\td"),
    ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
    ("\x85\x9b", "\\x85\\x9b"),  # C1: NEL, CSI
    ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
    ("\x0b\x0c\x1c\x1d\x1e", "\\x0b\\x0c\\x1c\\x1d\\x1e"),
    ("plain text, ünïcödé and back\\slashes", "plain text, ünïcödé and back\\slashes"),
])
def test_escape_controls(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped
    assert len(escape_controls(text).splitlines()) <= 1


def test_cr_lf_in_arguments_forges_no_record(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.info("%s GET %s %s", "req-1", f"/v1/images/abc{FORGED}", 404)
    logger.warning(f"message itself{FORGED}")
    records = _records(out)
    assert len(records) == 2
    assert records[0].endswith(
        "GET /v1/images/abc\\r\\n2001-01-01 00:00:00,000 INFO glimpse.request forged 404")
    assert "\n" not in records[0] and "\n" not in records[1]


def test_traceback_continuation_lines_indented(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    try:
        raise ValueError(f"bad id abc{FORGED}\nsecond line\x1b[0m")
    except ValueError:
        logger.exception("request failed for %s", f"x{FORGED}")
    records = _records(out)
    assert len(records) == 1
    first, *rest = records[0].split("\n")
    assert first.endswith("request failed for x\\r\\n2001-01-01 00:00:00,000 INFO "
                          "glimpse.request forged")
    assert rest[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest)
    assert "    ValueError: bad id abc\\r" in rest
    assert "    2001-01-01 00:00:00,000 INFO glimpse.request forged" in rest
    assert "    second line\\x1b[0m" in rest


def test_stack_info_indented(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    logger.warning("here", stack_info=True)
    records = _records(out)
    assert len(records) == 1
    assert "\n    Stack (most recent call last):\n" in records[0]


def test_exception_text_cached_by_another_formatter_escaped(
        log: tuple[logging.Logger, io.StringIO]) -> None:
    """A record another handler formatted first carries that formatter's exc_text."""
    logger, out = log
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), None)
    record.exc_text = f"Traceback{FORGED}\nValueError: http://u:pw@h/x"
    logger.handle(record)
    records = _records(out)
    assert len(records) == 1
    assert records[0].split("\n")[1:] == [
        "    Traceback\\r",
        "    2001-01-01 00:00:00,000 INFO glimpse.request forged",
        "    ValueError: http://***@h/x",
    ]


def test_url_credentials_redacted_everywhere(log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, out = log
    try:
        raise RuntimeError("cannot open swift+https://account:key-one@auth/c/o")
    except RuntimeError:
        logger.exception("copy of %s failed", "s3://access:key-two@s3/b/k")
    logger.debug("headers %r", [(b"x-image-meta-location", b"http://u:key-three@h/x")])
    logger.info("tab\tjoined http://u:key\tfour@h/x")
    text = out.getvalue()
    for secret in ("key-one", "key-two", "key-three", "four"):
        assert secret not in text, text
    assert "swift+https://***@auth/c/o" in text and "s3://***@s3/b/k" in text


def test_configuration_routes_uvicorn_through_the_formatter() -> None:
    """In a process of its own: dictConfig changes the whole process's logging."""
    code = (
        "import logging, logging.config, sys\n"
        "from glimpse.log_format import logging_config\n"
        "logging.config.dictConfig(logging_config('debug'))\n"
        "logging.getLogger('uvicorn.error').info('Started %s', 'a\\r\\nb')\n"
        "logging.getLogger('glimpse.request').debug('x http://u:pw@h/')\n"
        "logging.getLogger('alembic').info('hidden')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=30)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert RECORD_START.match(lines[0]) and lines[0].endswith("uvicorn.error Started a\\r\\nb")
    assert RECORD_START.match(lines[1]) and lines[1].endswith("glimpse.request x http://***@h/")
