"""v1's wire form of every refusal: domain errors to HTTP statuses (the one table), and the
router's own 404, 405 and 501, all as plain text."""

from __future__ import annotations

from starlette.responses import Response

from glimpse import errors
from glimpse.api.http import text_response

STATUS: dict[type[errors.GlimpseError], int] = {
    errors.Invalid: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Gone: 410,
    errors.PreconditionFailed: 412,
    errors.OverLimit: 413,
    errors.UnsupportedMediaType: 415,
    errors.RangeNotSatisfiable: 416,
    errors.Unavailable: 503,
}


def status_of(error: errors.GlimpseError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


# v1's own words for failures the domain names with a code (the domain's message is neutral;
# these are the texts v1 clients and tests have always seen).
WORDING = {
    "multiple_sources": "It's invalid to provide multiple image sources.",
    "location_not_queued": "Attempted to update Location field for an image not in queued "
                           "status.",
    "publicize": "Only administrators may publicize images (set is_public to true).",
}


def error_response(error: errors.GlimpseError) -> Response:
    message = WORDING.get(error.code or "", error.message)
    return text_response(status_of(error), message, retry_after(error))


def retry_after(error: errors.GlimpseError) -> list[tuple[bytes, bytes]]:
    """A Retry-After header for an outage that says when to try again."""
    if isinstance(error, errors.Unavailable) and error.retry_after is not None:
        return [(b"retry-after", str(error.retry_after).encode())]
    return []


def not_found() -> Response:
    return text_response(404, "The resource could not be found.")


def method_not_allowed(allow: str) -> Response:
    return text_response(405, "Method Not Allowed", [(b"allow", allow.encode())])


def not_implemented() -> Response:
    return text_response(501, "Not Implemented")
