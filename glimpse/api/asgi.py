"""The ASGI application: the core every API version shares.

Request ids, header limits, one log line per request, version discovery (the 200 and 300
documents), routing by URL prefix and then by Accept to one API router, identity, the 500
fallback, lifespan hooks. What a version answers, its refusals and errors included, is its
router's (see routing.py).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from glimpse.api.auth import Authenticator, Refusal
from glimpse.api.http import Header, in_thread, json_response, text_response
from glimpse.api.routing import CURRENT, KNOWN_METHODS, SUPPORTED, ApiRouter, Reply, VersionEntry
from glimpse.errors import GlimpseError

log = logging.getLogger("glimpse.request")

MAX_HEADERS = 256
REQUEST_ID = b"x-openstack-request-id"
Router = ApiRouter[Any]


class GlimpseApp:
    def __init__(
        self,
        routers: Sequence[Router],
        auth: Authenticator,
        public_endpoint: str = "",
        max_header_line: int = 16384,
        on_startup: Sequence[Callable[[], object]] = (),
        on_shutdown: Sequence[Callable[[], object]] = (),
    ) -> None:
        if not routers:
            raise ValueError("GlimpseApp needs at least one API router")
        self.routers = tuple(routers)
        self._by_prefix = _index(self.routers, lambda r: r.prefixes, "URL prefix")
        self._by_media_type = _index(self.routers, lambda r: r.media_types, "media type")
        self._versions = _version_entries(self.routers)
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.auth = auth
        self.public_endpoint = public_endpoint.rstrip("/")
        self.max_header_line = max_header_line

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = f"req-{uuid.UUID(int=random.getrandbits(128), version=4)}"
        tag: Header = (REQUEST_ID, request_id.encode())
        started = time.perf_counter()
        status = 0

        async def send_tagged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                # Added as the response starts, so every response carries it, whichever
                # router (or none) built it.
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            await send(message)

        try:
            response = await self.respond(scope, receive, request_id)
            await response(scope, receive, send_tagged)
        finally:
            log.info(
                "%s %s %s %s %.1fms", request_id, scope["method"], scope["path"],
                status or "aborted", (time.perf_counter() - started) * 1000,
            )

    async def respond(self, scope: Scope, receive: Receive, request_id: str) -> Reply:
        try:
            refusal = self._header_refusal(scope["headers"])
            if refusal is not None:
                # No version is chosen yet, so no version's wire form: plain text, like the
                # protocol's own 400s (and like v1).
                return text_response(400, refusal)
            request = Request(scope, receive)
            if scope["path"] == "/versions" and scope["method"] in ("GET", "HEAD"):
                return json_response(self._versions_document(request), 200)
            routed = self._route(scope["path"], request.headers.get("accept", ""))
            if routed is None:
                return json_response(self._versions_document(request), 300)
            router, path = routed
            try:
                return await self._dispatch(router, request, path)
            except GlimpseError as exc:
                return _error(router, exc, request)
        except Exception:
            log.exception("%s failed", request_id)
            return text_response(500, "Internal error; see the server log for " + request_id)

    def _route(self, path: str, accept: str) -> tuple[Router, str] | None:
        """The router a request goes to, and the path it sees (its prefix taken off)."""
        first, slash, rest = path.lstrip("/").partition("/")
        router = self._by_prefix.get(first)
        if router is not None:
            return router, slash + rest
        # An unversioned path goes to the version of the first Accept entry that names one
        # (exactly, parameters aside).
        for part in accept.split(","):
            router = self._by_media_type.get(part.split(";")[0].strip().lower())
            if router is not None:
                return router, path
        return None

    async def _dispatch(self, router: Router, request: Request, path: str) -> Reply:
        method = request.method
        found = router.match(method, path) if "\x00" not in path else None
        if found is None:
            if method in KNOWN_METHODS:
                return router.not_found(request)
            return router.not_implemented(request)
        if found.handler is None:
            return router.method_not_allowed(found.allow, request)
        try:
            principal = await self.auth.principal(request)
        except Refusal as refusal:
            return refusal.response
        context = router.context(request, principal, found.params, self._base_url)
        reply: Reply = await found.handler(context)
        return reply

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for hook in self.on_startup:
                    await in_thread(hook)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    await in_thread(hook)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _header_refusal(self, headers: list[Header]) -> str | None:
        if len(headers) > MAX_HEADERS:
            return f"Too many request headers (at most {MAX_HEADERS})"
        for name, value in headers:
            if len(name) + len(value) + 2 > self.max_header_line:
                return f"Header line too long (at most {self.max_header_line} bytes)"
        return None

    def _base_url(self, request: Request) -> str:
        if self.public_endpoint:
            return self.public_endpoint
        host = request.headers.get("host") or "{}:{}".format(*(request.scope["server"] or ("", 0)))
        return f"{request.url.scheme}://{host}"

    def _versions_document(self, request: Request) -> dict[str, Any]:
        base = self._base_url(request)
        return {
            "versions": [
                {"id": v.id, "status": v.status, "links": [{"rel": "self", "href": base + v.href}]}
                for v in self._versions
            ]
        }


def _index(
    routers: Sequence[Router], keys: Callable[[Router], frozenset[str]], what: str
) -> dict[str, Router]:
    index: dict[str, Router] = {}
    for router in routers:
        for key in keys(router):
            if key in index:
                raise ValueError(f"two API routers claim the {what} {key!r}")
            index[key] = router
    return index


def _version_entries(routers: Sequence[Router]) -> list[VersionEntry]:
    """Every router's entries, highest version first; only the highest of all is CURRENT."""
    entries = sorted(
        (entry for router in routers for entry in router.versions),
        key=lambda entry: entry.number, reverse=True,
    )
    if len({entry.id for entry in entries}) != len(entries):
        raise ValueError("two versions document entries share an id")
    return [
        dataclasses.replace(entry, status=CURRENT if i == 0 else (
            SUPPORTED if entry.status == CURRENT else entry.status
        ))
        for i, entry in enumerate(entries)
    ]


def _error(router: Router, exc: GlimpseError, request: Request) -> Response:
    response = router.error(exc, request)
    if response.status_code >= 500:
        log.warning("answering %d: %s", response.status_code, exc.message)
    return response
