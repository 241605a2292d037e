"""What the core asks of one API version, and the route table machinery every version uses.

An API version is an ``ApiRouter``: the URL prefixes and Accept media types that select it, its
entries in the versions document, its route table, its request context, and its own wire form
for refusals and domain errors. Everything else (request ids, header limits, the request log,
version discovery, identity, the 500 fallback) is the core's, in ``asgi.py``; adding a version
adds a router and changes no other.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

from glimpse.api.http import RequestContext
from glimpse.domain.model import Principal
from glimpse.errors import GlimpseError

# A method outside these on an unknown path is 501, not 404 (on a known path it is 405).
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))
CURRENT = "CURRENT"
SUPPORTED = "SUPPORTED"

Reply = Response | ASGIApp
H = TypeVar("H")
C = TypeVar("C", bound=RequestContext)


@dataclasses.dataclass(frozen=True)
class Route(Generic[H]):
    pattern: re.Pattern[str]
    methods: Mapping[str, H]
    allow: str
    # The path with each parameter as {name} ("/images/{image_id}/file"): what metrics label
    # a request by, so that the number of label values is the number of routes, whatever
    # paths clients send.
    template: str = ""


@dataclasses.dataclass(frozen=True)
class Match(Generic[H]):
    handler: H | None  # None: the path is known but not the method
    params: dict[str, str]
    allow: str
    template: str = ""


def route(path: str, allow: str, **methods: H) -> Route[H]:
    """A route for the whole of ``path`` (a regular expression with named groups)."""
    return Route(re.compile(f"^{path}$"), methods, allow, template_of(path))


_PARAMETER = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def template_of(path: str) -> str:
    """The route's path pattern as a template: each named group as ``{name}``, an optional
    slash as a slash (``/images/(?P<image_id>[^/]+)`` -> ``/images/{image_id}``)."""
    return _PARAMETER.sub(r"{\1}", path).replace("/?", "/")


def match(routes: Sequence[Route[H]], method: str, path: str) -> Match[H] | None:
    """The first route whose pattern takes ``path``; None when none does."""
    for candidate in routes:
        found = candidate.pattern.match(path)
        if found is not None:
            return Match(candidate.methods.get(method), found.groupdict(), candidate.allow,
                         candidate.template)
    return None


@dataclasses.dataclass(frozen=True)
class VersionEntry:
    """One entry of the versions document."""

    id: str  # "v1.1"
    # The status a router asks for. The core makes the highest version of all routers the one
    # CURRENT entry, and lists any other entry that asks for CURRENT as SUPPORTED, so adding a
    # newer version demotes the older ones without editing them.
    status: str
    href: str  # appended to the base URL: "/v1/"

    @property
    def number(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.id.removeprefix("v").split("."))


class ApiRouter(Protocol[C]):
    """One API version, as the core routes to it."""

    @property
    def prefixes(self) -> frozenset[str]:
        """First path segments that select this version ("v1")."""
        ...

    @property
    def media_types(self) -> frozenset[str]:
        """Accept media types (lower case, without parameters) that select this version for
        an unversioned path."""
        ...

    @property
    def versions(self) -> Sequence[VersionEntry]: ...

    def match(self, method: str, path: str) -> Match[Callable[[C], Awaitable[Reply]]] | None:
        """The handler for ``path`` (the prefix taken off); None for an unknown path."""
        ...

    def context(
        self, request: Request, principal: Principal, params: dict[str, str],
        base_url_of: Callable[[Request], str],
    ) -> C:
        """What this version's handlers are called with."""
        ...

    # The refusals get the request: a version may word them by what it accepts (v2 answers
    # HTML, JSON or text by the Accept header).

    def error(self, error: GlimpseError, request: Request) -> Response: ...

    def not_found(self, request: Request) -> Response: ...

    def method_not_allowed(self, allow: str, request: Request) -> Response:
        """The refusal of a method the path does not take; it carries ``Allow: <allow>``."""
        ...

    def not_implemented(self, request: Request) -> Response: ...
