"""The v2 route table (spec §2.11)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from glimpse.api import routing
from glimpse.api.routing import Match, Route, route
from glimpse.api.v2.handlers import Handler, V2Handlers

if TYPE_CHECKING:
    from glimpse.api.v2.cache_handlers import CacheHandlers
    from glimpse.api.v2.import_handlers import ImportHandlers
    from glimpse.api.v2.task_handlers import TaskHandlers

SEG = "[^/]+"
IMAGE = f"/images/(?P<image_id>{SEG})"


def build_routes(h: V2Handlers, *, cache: CacheHandlers | None = None,
                 imports: ImportHandlers | None = None,
                 tasks: TaskHandlers | None = None) -> list[Route[Handler]]:
    return [
        *(import_routes(imports) if imports is not None else []),
        *(task_routes(tasks) if tasks is not None else []),
        route("/images", "GET, POST", GET=h.list_images, POST=h.create),
        route(IMAGE, "GET, PATCH, DELETE", GET=h.show, PATCH=h.update, DELETE=h.delete),
        route(f"{IMAGE}/file", "GET, PUT", GET=h.download, PUT=h.upload),
        route(f"{IMAGE}/tags/(?P<tag>{SEG})", "PUT, DELETE", PUT=h.add_tag,
              DELETE=h.remove_tag),
        route(f"{IMAGE}/members", "GET, POST", GET=h.list_members, POST=h.add_member),
        route(f"{IMAGE}/members/(?P<member>{SEG})", "GET, PUT, DELETE", GET=h.show_member,
              PUT=h.update_member, DELETE=h.remove_member),
        route(f"{IMAGE}/actions/deactivate", "POST", POST=h.deactivate),
        route(f"{IMAGE}/actions/reactivate", "POST", POST=h.reactivate),
        route(f"{IMAGE}/locations", "GET, POST", GET=h.locations, POST=h.add_location),
        route("/info/usage", "GET", GET=h.usage),
        *_store_routes(h),
        route(f"/schemas/(?P<name>{SEG})", "GET", GET=h.schema),
        *(cache_routes(cache) if cache is not None else []),
    ]


def cache_routes(c: CacheHandlers) -> list[Route[Handler]]:
    """The cache API, only with a cache configured (glimpse/api/v2/cache_handlers.py)."""
    return [
        route("/cache", "GET, DELETE", GET=c.state, DELETE=c.clear),
        route("/cache/clean", "POST", POST=c.clean),
        route("/cache/prune", "POST", POST=c.prune),
        route(f"/cache/nodes/(?P<image_id>{SEG})", "GET", GET=c.nodes),
        route(f"/cache/(?P<image_id>{SEG})", "PUT, DELETE", PUT=c.queue, DELETE=c.delete),
    ]


def _store_routes(h: V2Handlers) -> list[Route[Handler]]:
    """Multi-store (store_handlers.py): served when the app has a store catalog."""
    if h.stores is None:
        return []
    s = h.stores
    return [
        route("/info/stores", "GET", GET=s.info),
        route("/info/stores/detail", "GET", GET=s.detail),
        route(f"/stores/(?P<store_id>{SEG})/(?P<image_id>{SEG})", "DELETE",
              DELETE=s.delete_copy),
    ]


def import_routes(h: ImportHandlers) -> list[Route[Handler]]:
    """Interoperable import (spec §3; docs/import.md)."""
    return [
        route("/info/import", "GET", GET=h.info_import),
        route(f"{IMAGE}/stage", "PUT", PUT=h.stage),
        route(f"{IMAGE}/import", "POST", POST=h.import_image),
        route(f"{IMAGE}/tasks", "GET", GET=h.image_tasks),
    ]


def task_routes(h: TaskHandlers) -> list[Route[Handler]]:
    """The legacy tasks API and the task schemas (before the generic schema route)."""
    return [
        route("/tasks", "GET, POST", GET=h.list_tasks, POST=h.create),
        route(f"/tasks/(?P<task_id>{SEG})", "GET", GET=h.show),
        route("/schemas/task", "GET", GET=h.task_schema),
        route("/schemas/tasks", "GET", GET=h.tasks_schema),
    ]


def match(routes: list[Route[Handler]], method: str, path: str) -> Match[Handler] | None:
    return routing.match(routes, method, path)
