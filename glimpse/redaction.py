"""URL credentials are never rendered: not in a response, a log record or an exception text.

Standard library only, so that any layer may use it (the domain's dependency rule included,
should it ever render a URL itself).
"""

from __future__ import annotations

import re

REDACTED = "***"
_SCHEME_AND_SLASHES = r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//"  # "//host" is a URL too (RFC 3986)
_URL_START = re.compile(_SCHEME_AND_SLASHES)
# In free text a URL runs to the next whitespace; a greedy run finds its last "@".
_URL_WITH_USERINFO = re.compile(rf"({_SCHEME_AND_SLASHES})\S*@")


def redact_url(url: str) -> str:
    """``url`` with its userinfo (``user:secret@``) replaced by ``***@``; never raises.

    Everything between ``scheme://`` or ``//`` (or the start, for a URL without either) and
    the *last*
    ``@`` is taken for userinfo, not only what a parser would call so: a secret holding an
    unencoded ``/``, ``?`` or ``#`` (S3 secret keys often hold a ``/``) or a malformed URL
    (``http://user:secret@[bad``) is hidden too. The price, over-redacting a URL whose path
    or query holds an ``@``, only costs an error message some detail.
    """
    start = _URL_START.match(url)
    begin = start.end() if start else 0
    at = url.rfind("@")
    if at < begin:
        return url
    return f"{url[:begin]}{REDACTED}{url[at:]}"


def redact_urls(text: str) -> str:
    """``text`` with the userinfo of every ``scheme://`` or ``//`` URL in it redacted, as
    redact_url does; for text that may hold URLs among other words (log records, exception
    texts). A URL without either (``user:secret@host``) cannot be told from other words here:
    redact_url it where it is rendered."""
    if "@" not in text:  # no userinfo, as in most log records: no search
        return text
    return _URL_WITH_USERINFO.sub(rf"\1{REDACTED}@", text)
