"""v2's wire form of every refusal: domain errors to HTTP statuses (the one table), and the
body of each refusal in the form the caller's Accept asks for (spec §2.11).

Glance's errors are webob's: an HTML page for ``*/*`` or no Accept (glanceclient strips the
tags and joins the lines), JSON ``{"message", "code", "title"}`` for ``application/json`` (the
SDK), plain text otherwise. The message is escaped in the HTML form: it may quote request text.
"""

from __future__ import annotations

import html
import json
from http import HTTPStatus

from starlette.requests import Request
from starlette.responses import Response

from glimpse import errors
from glimpse.api.http import Header
from glimpse.api.v2.body import shown_key
from glimpse.api.v2.patch import ACCEPT_PATCH, PATCH_MEDIA_TYPE

STATUS: dict[type[errors.GlimpseError], int] = {
    errors.Invalid: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    # A store that refuses writes (X-Image-Meta-Store: http): Glance's StoreAddDisabled, 410.
    errors.Gone: 410,
    # The image was deleted while its data arrived (Glance: 410 Gone).
    errors.PreconditionFailed: 410,
    errors.OverLimit: 413,
    errors.UnsupportedMediaType: 415,
    errors.RangeNotSatisfiable: 416,
    errors.Unavailable: 503,
}
# Failures the domain names with a code that v2 answers with another status than the class's.
CODE_STATUS = {
    "declared_over_cap": 413,  # a size over the cap, known before any byte arrived
    "image_content": 415,  # the data is not its disk_format, or fails its safety checks
}


def status_of(error: errors.GlimpseError) -> int:
    if error.code in CODE_STATUS:
        return CODE_STATUS[error.code]
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(error: errors.GlimpseError, request: Request) -> Response:
    headers: list[Header] = []
    if error.code == PATCH_MEDIA_TYPE:
        # A PATCH's 415 names the media types it takes.
        headers.append((b"accept-patch", ACCEPT_PATCH.encode()))
    if isinstance(error, errors.Unavailable) and error.retry_after is not None:
        headers.append((b"retry-after", str(error.retry_after).encode()))
    if isinstance(error, errors.RangeNotSatisfiable):
        # The data's size, so the client can ask again for a range it holds (RFC 9110).
        headers.append((b"content-range", f"bytes */{error.size}".encode()))
    message = error.message
    if isinstance(error, errors.PropertyProtected):
        # Glance v2's words for a protected property (its ReservedProperty).
        message = f"Attribute '{shown_key(error.name)}' is reserved."
    return refusal(status_of(error), message, request, headers)


def refusal(status: int, message: str, request: Request,
            headers: list[Header] | None = None) -> Response:
    """A refusal with ``message`` as its explanation, in the form the Accept header asks for."""
    phrase = HTTPStatus(status).phrase
    title = f"{status} {phrase}"
    accept = request.headers.get("accept", "")
    form = _form(accept)
    if form == "json":
        body = json.dumps({"message": message, "code": title, "title": phrase},
                          ensure_ascii=False)
        media_type = "application/json"
    elif form == "html":
        body = (f"<html>\n <head>\n  <title>{title}</title>\n </head>\n <body>\n"
                f"  <h1>{title}</h1>\n  {html.escape(message)}<br /><br />\n\n\n\n"
                " </body>\n</html>")
        media_type = "text/html; charset=UTF-8"
    else:
        body = f"{title}\n\n{message}\n\n   "
        media_type = "text/plain; charset=UTF-8"
    response = Response(body.encode("utf-8"), status_code=status)
    response.headers["content-type"] = media_type
    response.raw_headers.extend(headers or [])
    return response


def _form(accept: str) -> str:
    """Which body form: the first Accept entry that names one of the three (webob picks by
    its offers; clients send one type, or */*)."""
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in ("application/json", "application/*"):
            return "json"
        if media in ("text/html", "*/*", "text/*", ""):
            return "html"
        if media == "text/plain":
            return "text"
    return "html" if not accept.strip() else "text"


def not_found(request: Request) -> Response:
    return refusal(404, "The resource could not be found.", request)


def method_not_allowed(allow: str, request: Request) -> Response:
    return refusal(405, "The method is not allowed for this resource.", request,
                   [(b"allow", allow.encode())])


def not_implemented(request: Request) -> Response:
    return refusal(501, "The server does not implement this method.", request)
