"""Domain errors: every failure the service reports to a caller.

    GlimpseError
    ├── Invalid              the request is malformed or names a bad value       (400)
    ├── Unauthenticated      the caller has no identity where one is needed     (401)
    ├── Forbidden            the caller may see the image but not do this       (403)
    │   └── PropertyProtected  a property protection refuses it (``name``)
    ├── NotFound             unknown, or invisible to the caller                (404)
    ├── Conflict             the image is not in a state that allows this       (409)
    ├── Gone                 the target store is read-only                      (410)
    ├── PreconditionFailed   the image was deleted while its data arrived       (412)
    ├── OverLimit            a quota or a size cap was exceeded                 (413)
    ├── UnsupportedMediaType a body of a type this request does not take        (415)
    ├── RangeNotSatisfiable  a byte range selects none of the image's data      (416)
    └── Unavailable          a backend is temporarily out of reach              (503)

Each API version maps these to HTTP in one table; nothing else raises HTTP errors.
"""

from __future__ import annotations


class GlimpseError(Exception):
    """Base of every error the service turns into a response."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        # A stable name for this particular failure, for an API whose error table words some
        # failures in its own terms (the message stays neutral).
        self.code = code


class Invalid(GlimpseError):
    pass


class Unauthenticated(GlimpseError):
    pass


class Forbidden(GlimpseError):
    pass


class PropertyProtected(Forbidden):
    """The operator's property protections refuse the caller this change of property
    ``name``; each API words it its own way."""

    def __init__(self, name: str) -> None:
        super().__init__(f"Property '{name}' is protected", code="property_protected")
        self.name = name


class NotFound(GlimpseError):
    pass


class Conflict(GlimpseError):
    pass


class Gone(GlimpseError):
    pass


class PreconditionFailed(GlimpseError):
    pass


class OverLimit(GlimpseError):
    pass


class UnsupportedMediaType(GlimpseError):
    pass


class Unavailable(GlimpseError):
    """``retry_after``: the seconds a client should wait before trying again, when known
    (answered as ``Retry-After``)."""

    def __init__(self, message: str, code: str | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class RangeNotSatisfiable(GlimpseError):
    """A byte range that selects nothing of the data; ``size`` is the data's size, which the
    answer states (``Content-Range: bytes */size``) so a client can ask again."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size
