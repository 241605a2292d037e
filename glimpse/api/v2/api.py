"""v2 as one of the core's API routers: how a request reaches it (spec §1) and what it answers
with when it refuses one (spec §2.11)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.routing import CURRENT, SUPPORTED, Match, VersionEntry
from glimpse.api.v2 import errors
from glimpse.api.v2.handlers import Call, Handler, V2Handlers
from glimpse.api.v2.import_handlers import ImportHandlers
from glimpse.api.v2.routes import build_routes, match
from glimpse.api.v2.task_handlers import TaskHandlers
from glimpse.domain.model import Principal
from glimpse.errors import GlimpseError, Invalid

if TYPE_CHECKING:
    from glimpse.api.v2.cache_handlers import CacheHandlers

# The minor versions and what each brought (spec §1). A minor is listed exactly when glimpse
# implements its feature: clients gate calls on this list.
MINOR_FEATURES: dict[int, str] = {
    0: "images, image data, tags, schemas, the v2.0 JSON-patch",
    1: "members with pending/accepted/rejected, the v2.1 JSON-patch",
    2: "property protections (none configured) and multiple locations (not shown)",
    3: "deactivate and reactivate",
    4: "location rules",
    5: "community and shared visibilities, shared by default",
    6: "interoperable import: /stage, /import, /v2/info/import (docs/import.md)",
    7: "os_hidden, multihash",
    11: "copy-image of images one does not own (copy_image policy); the import lock "
        "(os_glance_import_task) expires",
    12: "GET /v2/images/{id}/tasks; a stage and its import may reach different API processes "
        "(shared staging, docs/import.md)",
    13: "GET /v2/info/usage (served whatever the stores; Glance lists it with multi-store only)",
    15: "GET /v2/info/stores/detail (404 without multi-store, as Glance's)",
    17: "the locations API (POST and GET /v2/images/{id}/locations)",
}
# Listed only when the operator turns multi-store on (Glance: enabled_backends), whose
# features they are (docs/multi-store.md).
MULTI_STORE_MINORS: dict[int, str] = {
    8: "multi-store: /v2/info/stores, X-Image-Meta-Store on upload, OpenStack-image-store-ids, "
       "the stores attribute",
    9: "2.8 declared stable (no new routes)",
    10: "import into several stores (stores, all_stores, all_stores_must_succeed), copy-image, "
        "DELETE /v2/stores/{store}/{image}",
}
# Those of the later minors (import, copy-image, tasks, the cache) come with their features;
# see docs/v2-choices.md.
LISTED_MINORS: tuple[int, ...] = tuple(sorted(MINOR_FEATURES))
# Listed only when the operator configured an image cache (its API is served then only).
CACHE_MINORS: dict[int, str] = {
    14: "the cache API (/v2/cache...)",
    16: "PUT /v2/cache/{image_id} answers 202",
    18: "POST /v2/cache/clean and /v2/cache/prune",
}


def listed_minors(multi_store: bool) -> tuple[int, ...]:
    """The minors to list for this deployment."""
    return tuple(sorted({*MINOR_FEATURES, *(MULTI_STORE_MINORS if multi_store else ())}))


class V2Api:
    def __init__(self, handlers: V2Handlers, minors: Iterable[int] = LISTED_MINORS, *,
                 cache: CacheHandlers | None = None, imports: ImportHandlers | None = None,
                 tasks: TaskHandlers | None = None) -> None:
        listed = sorted(set(minors))
        self.prefixes = frozenset(["v2", *(f"v2.{n}" for n in listed)])
        self.media_types = frozenset(
            f"application/vnd.openstack.images-{p}" for p in self.prefixes
        )
        self.versions = tuple(
            VersionEntry(f"v2.{n}", CURRENT if n == listed[-1] else SUPPORTED, "/v2/")
            for n in listed
        )
        self._routes = build_routes(handlers, cache=cache, imports=imports, tasks=tasks)

    def match(self, method: str, path: str) -> Match[Handler] | None:
        return match(self._routes, method, path)

    def context(
        self, request: Request, principal: Principal, params: dict[str, str],
        base_url_of: Callable[[Request], str],
    ) -> Call:
        raw_path = request.scope.get("raw_path")
        if raw_path:
            try:
                unquote_to_bytes(raw_path.split(b"?", 1)[0]).decode("utf-8")
            except UnicodeDecodeError:
                raise Invalid("The request path must be UTF-8 text.") from None
        return Call(request, principal, params, base_url_of)

    def error(self, error: GlimpseError, request: Request) -> Response:
        return errors.error_response(error, request)

    def not_found(self, request: Request) -> Response:
        return errors.not_found(request)

    def method_not_allowed(self, allow: str, request: Request) -> Response:
        return errors.method_not_allowed(allow, request)

    def not_implemented(self, request: Request) -> Response:
        return errors.not_implemented(request)
