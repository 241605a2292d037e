"""The v1 route table (spec §4)."""

from __future__ import annotations

import dataclasses
import re

from glimpse.api.v1.handlers import Handler, V1Handlers

KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"))


@dataclasses.dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, Handler]
    allow: str


@dataclasses.dataclass(frozen=True)
class Match:
    handler: Handler | None  # None: the path is known but not the method
    params: dict[str, str]
    allow: str


def build_routes(h: V1Handlers) -> list[Route]:
    def route(path: str, allow: str, **methods: Handler) -> Route:
        return Route(re.compile(f"^{path}$"), methods, allow)

    seg = "[^/]+"
    return [
        route("/?", "GET", GET=h.list_brief),
        route("/images", "GET, POST", GET=h.list_brief, POST=h.create),
        # Matched before /images/{id}, so "detail" can never be an image id.
        route("/images/detail", "GET, HEAD", GET=h.list_detail),
        route(f"/images/(?P<image_id>{seg})", "GET, HEAD, PUT, DELETE",
              GET=h.download, HEAD=h.show, PUT=h.update, DELETE=h.delete),
        route(f"/images/(?P<image_id>{seg})/members", "GET, PUT",
              GET=h.list_members, PUT=h.replace_members),
        route(f"/images/(?P<image_id>{seg})/members/(?P<member>{seg})", "GET, PUT, DELETE",
              GET=h.show_member, PUT=h.add_member, DELETE=h.remove_member),
        route(f"/shared-images/(?P<member>{seg})", "GET", GET=h.shared_images),
    ]


def match(routes: list[Route], method: str, path: str) -> Match | None:
    for route in routes:
        found = route.pattern.match(path)
        if found is None:
            continue
        handler = route.methods.get(method)
        allow = route.allow
        if handler is None and method == "HEAD" and "HEAD" in allow and "GET" in route.methods:
            allow = "GET"  # HEAD /images/detail is refused, naming only GET (spec §4)
        return Match(handler, found.groupdict(), allow)
    return None
