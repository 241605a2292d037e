"""The ASGI application: the core every API version shares.

Request ids, header limits, one log line per request, version discovery (the 200 and 300
documents), routing by URL prefix and then by Accept to one API router, identity, the 500
fallback, lifespan hooks, ``/healthcheck`` (health.py) and each request's metrics. What a
version answers, its refusals and errors included, is its router's (see routing.py).
"""

from __future__ import annotations

import dataclasses
import logging
import random
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from glimpse.api import health
from glimpse.api.auth import Authenticator, Refusal
from glimpse.api.http import Header, in_thread, json_response, text_response
from glimpse.api.protocol import SENDFILE
from glimpse.api.routing import CURRENT, KNOWN_METHODS, SUPPORTED, ApiRouter, Reply, VersionEntry
from glimpse.errors import GlimpseError, Invalid, Unauthenticated, Unavailable
from glimpse.log_format import REQUEST_IDS, RequestIds
from glimpse.metrics import UNMATCHED, NullRecorder, Recorder

log = logging.getLogger("glimpse.request")

MAX_HEADERS = 256
REQUEST_ID = b"x-openstack-request-id"
# The global request id nova and cinder send (oslo.context's form); any other value is ignored,
# so what reaches the logs is always this shape, never a client's raw text.
GLOBAL_REQUEST_ID = re.compile(
    r"req-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# Where the core notes, in the ASGI scope, the route template the request matched: its label.
ROUTE_KEY = "glimpse.route"
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
        health_check: health.HealthCheck | None = None,
        metrics: Recorder | None = None,
    ) -> None:
        if not routers:
            raise ValueError("GlimpseApp needs at least one API router")
        self.routers = tuple(routers)
        self._by_prefix = _index(self.routers, lambda r: r.prefixes, "URL prefix")
        self._by_media_type = _index(self.routers, lambda r: r.media_types, "media type")
        self._versions = _version_entries(self.routers)
        # Each router's metrics label prefix: its own shortest prefix ("v2", not "v2.16").
        self._label_prefix = {id(r): "/" + min(r.prefixes, key=len) for r in self.routers}
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.auth = auth
        self.public_endpoint = public_endpoint.rstrip("/")
        self.max_header_line = max_header_line
        self.health = health_check or health.HealthCheck()
        self.metrics: Recorder = metrics or NullRecorder()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = f"req-{uuid.UUID(int=random.getrandbits(128), version=4)}"
        ids = REQUEST_IDS.set(RequestIds(request_id, _global_request_id(scope["headers"])))
        tag: Header = (REQUEST_ID, request_id.encode())
        started = time.perf_counter()
        status = 0
        bytes_in = bytes_out = 0
        content_length = 0

        async def receive_counted() -> Message:
            nonlocal bytes_in
            message = await receive()
            if message["type"] == "http.request":
                bytes_in += len(message.get("body", b""))
            return message

        async def send_tagged(message: Message) -> None:
            nonlocal status, bytes_out, content_length
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                content_length = _content_length(message.get("headers", ()))
                # Added as the response starts, so every response carries it, whichever
                # router (or none) built it.
                message = {**message, "headers": [*message.get("headers", ()), tag]}
            elif kind == "http.response.body":
                bytes_out += len(message.get("body", b""))
            elif kind == SENDFILE and scope["method"] != "HEAD":
                bytes_out += content_length  # a zero-copy file send: the Content-Length
            await send(message)

        try:
            response = await self.respond(scope, receive_counted, request_id)
            await response(scope, receive_counted, send_tagged)
        finally:
            took = time.perf_counter() - started
            log.info(
                "%s %s %s %s %.1fms", request_id, scope["method"], scope["path"],
                status or "aborted", took * 1000,
            )
            self.metrics.request(scope["method"], scope.get(ROUTE_KEY, UNMATCHED), status,
                                 took, bytes_in, bytes_out)
            REQUEST_IDS.reset(ids)

    async def respond(self, scope: Scope, receive: Receive, request_id: str) -> Reply:
        try:
            refusal = self._header_refusal(scope["headers"])
            if refusal is not None:
                # No version is chosen yet, so no version's wire form: plain text, like the
                # protocol's own 400s (and like v1).
                return text_response(400, refusal)
            request = Request(scope, receive)
            if scope["path"] == health.PATH:
                scope[ROUTE_KEY] = health.PATH
                return await self._health(request)
            if scope["path"] == "/versions" and scope["method"] in ("GET", "HEAD"):
                scope[ROUTE_KEY] = "/versions"
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
        if found is not None:
            request.scope[ROUTE_KEY] = self._label_prefix[id(router)] + found.template
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

    async def _health(self, request: Request) -> Reply:
        """oslo.middleware's healthcheck: the plain form for anyone, before identity (load
        balancers send no token); the detailed form for administrators only."""
        detailed = request.query_params.get("detailed", "").lower() in ("true", "1", "yes")
        if detailed and request.method != "HEAD":
            try:
                principal = await self.auth.principal(request)
            except Refusal as refusal:
                return refusal.response
            except GlimpseError as exc:
                # No API version was chosen: plain text, as for the header refusals.
                return text_response(_HEALTH_REFUSALS.get(type(exc), 403), exc.message)
            if not principal.is_admin:
                return text_response(403, "The detailed health check is for administrators.")
        return await self.health.answer(request, detailed and request.method != "HEAD")

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
        # The scope's scheme: request.url would parse the whole URL for it.
        return f"{request.scope.get('scheme', 'http')}://{host}"

    def _versions_document(self, request: Request) -> dict[str, Any]:
        base = self._base_url(request)
        return {
            "versions": [
                {"id": v.id, "status": v.status, "links": [{"rel": "self", "href": base + v.href}]}
                for v in self._versions
            ]
        }


_HEALTH_REFUSALS = {Invalid: 400, Unauthenticated: 401, Unavailable: 503}


def _global_request_id(headers: list[Header]) -> str | None:
    for name, value in headers:
        if name == REQUEST_ID:
            text = value.decode("latin-1")
            return text if GLOBAL_REQUEST_ID.fullmatch(text) else None
    return None


def _content_length(headers: Sequence[Header]) -> int:
    for name, value in headers:
        if name.lower() == b"content-length" and value.isdigit():
            return int(value)
    return 0


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
