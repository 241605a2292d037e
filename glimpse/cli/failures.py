"""What an operator command says when a store or the database fails under it: one line, no
traceback, nothing a driver's message might carry (a URL with credentials, a host)."""

from __future__ import annotations

import logging

from glimpse.errors import GlimpseError
from glimpse.log_format import escape_controls
from glimpse.redaction import redact_urls

log = logging.getLogger("glimpse.cli")


def failure_message(exc: BaseException) -> str:
    """A glimpse error's own message (written for clients); of anything else, its kind only.
    The whole story goes to the log at debug level (whose formatter redacts URLs)."""
    log.debug("operator command failed", exc_info=exc)
    if isinstance(exc, GlimpseError):
        return redact_urls(escape_controls(exc.message))
    if _is_database_error(exc):
        return (f"the database did not answer ({type(exc).__name__}); "
                "GLIMPSE_LOG_LEVEL=debug shows the driver's message")
    return f"{type(exc).__name__} (GLIMPSE_LOG_LEVEL=debug shows the details)"


def _is_database_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import SQLAlchemyError

    return isinstance(exc, SQLAlchemyError)
