"""v1 as one of the core's API routers: how a request reaches it (spec §3) and what it answers
with when it refuses one."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.routing import CURRENT, SUPPORTED, Match, VersionEntry
from glimpse.api.v1 import errors
from glimpse.api.v1.handlers import Call, Handler, V1Handlers
from glimpse.api.v1.routes import build_routes, match
from glimpse.domain.model import Principal
from glimpse.errors import GlimpseError

PREFIXES = frozenset(("v1", "v1.0", "v1.1"))


class V1Api:
    prefixes = PREFIXES
    media_types = frozenset(f"application/vnd.openstack.images-{p}" for p in PREFIXES)
    versions = (VersionEntry("v1.1", CURRENT, "/v1/"), VersionEntry("v1.0", SUPPORTED, "/v1/"))

    def __init__(self, handlers: V1Handlers) -> None:
        self._routes = build_routes(handlers)

    def match(self, method: str, path: str) -> Match[Handler] | None:
        return match(self._routes, method, path)

    def context(
        self, request: Request, principal: Principal, params: dict[str, str],
        base_url_of: Callable[[Request], str],
    ) -> Call:
        return Call(request, principal, params, base_url_of)

    def error(self, error: GlimpseError, request: Request) -> Response:
        return errors.error_response(error)

    def not_found(self, request: Request) -> Response:
        return errors.not_found()

    def method_not_allowed(self, allow: str, request: Request) -> Response:
        return errors.method_not_allowed(allow)

    def not_implemented(self, request: Request) -> Response:
        return errors.not_implemented()
