"""Domain errors to v1 HTTP statuses: the one table."""

from __future__ import annotations

from glimpse import errors

STATUS: dict[type[errors.GlimpseError], int] = {
    errors.Invalid: 400,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.Gone: 410,
    errors.PreconditionFailed: 412,
    errors.OverLimit: 413,
    errors.Unavailable: 503,
}


def status_of(error: errors.GlimpseError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500
