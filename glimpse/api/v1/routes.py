"""The v1 route table (spec §4)."""

from __future__ import annotations

import dataclasses

from glimpse.api import routing
from glimpse.api.routing import Match, Route, route
from glimpse.api.v1.handlers import Handler, V1Handlers


def build_routes(h: V1Handlers) -> list[Route[Handler]]:
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


def match(routes: list[Route[Handler]], method: str, path: str) -> Match[Handler] | None:
    found = routing.match(routes, method, path)
    if found is not None and found.handler is None and method == "HEAD" and "HEAD" in found.allow:
        # HEAD /images/detail is refused, naming only GET (spec §4): every v1 path that lists
        # HEAD without serving it serves GET.
        return dataclasses.replace(found, allow="GET")
    return found
