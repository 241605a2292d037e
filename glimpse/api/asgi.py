"""The ASGI application: version negotiation, request ids, logging, errors, then v1 routing."""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from glimpse.api.auth import Authenticator
from glimpse.api.http import in_thread, json_response, text_response
from glimpse.api.v1.errors import status_of
from glimpse.api.v1.handlers import Call, V1Handlers
from glimpse.api.v1.routes import KNOWN_METHODS, build_routes, match
from glimpse.errors import GlimpseError, Invalid

log = logging.getLogger("glimpse.request")

V1_PREFIXES = frozenset(("v1", "v1.0", "v1.1"))
V1_MEDIA_TYPES = frozenset(
    f"application/vnd.openstack.images-{version}" for version in V1_PREFIXES
)
MAX_HEADERS = 256


class GlimpseApp:
    def __init__(
        self,
        v1: V1Handlers,
        auth: Authenticator,
        public_endpoint: str = "",
        max_header_line: int = 16384,
        on_startup: Sequence[Callable[[], object]] = (),
        on_shutdown: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self.routes = build_routes(v1)
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
        started = time.perf_counter()
        status = 0

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            response = await self.respond(scope, receive, request_id)
            await response(scope, receive, send_logged)
        finally:
            log.info(
                "%s %s %s %s %.1fms", request_id, scope["method"], scope["path"],
                status or "aborted", (time.perf_counter() - started) * 1000,
            )

    async def respond(self, scope: Scope, receive: Receive, request_id: str) -> Any:
        request = Request(scope, receive)
        rid = [(b"x-openstack-request-id", request_id.encode())]
        try:
            self._check_headers(scope)
            path = scope["path"]
            segments = path.lstrip("/").split("/", 1)
            accept = request.headers.get("accept", "")
            if path == "/versions" and scope["method"] in ("GET", "HEAD"):
                return json_response(self._versions(request), 200)
            if segments[0] in V1_PREFIXES:
                rest = "/" + segments[1] if len(segments) > 1 else ""
            elif _accepts_v1(accept):
                rest = path
            else:
                return json_response(self._versions(request), 300)
            return await self._v1(request, rest, rid)
        except GlimpseError as exc:
            return _error(exc, rid)
        except Exception:
            log.exception("%s failed", request_id)
            return text_response(500, "Internal error; see the server log for " + request_id, rid)

    async def _v1(self, request: Request, path: str, rid: list[tuple[bytes, bytes]]) -> Any:
        method = request.method
        found = match(self.routes, method, path) if "\x00" not in path else None
        if found is None:
            if method not in KNOWN_METHODS:
                return text_response(501, "Not Implemented", rid)
            return text_response(404, "The resource could not be found.", rid)
        if found.handler is None:
            allow = (b"allow", found.allow.encode())
            return text_response(405, "Method Not Allowed", [*rid, allow])
        principal = self.auth.principal(request.headers)
        call = Call(request, principal, found.params, self._base_url)
        response = await found.handler(call)
        if isinstance(response, Response):
            response.raw_headers.extend(rid)
        else:
            response.headers.extend(rid)  # type: ignore[attr-defined]
        return response

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

    def _check_headers(self, scope: Scope) -> None:
        headers = scope["headers"]
        if len(headers) > MAX_HEADERS:
            raise Invalid(f"Too many request headers (at most {MAX_HEADERS})")
        for name, value in headers:
            if len(name) + len(value) + 2 > self.max_header_line:
                raise Invalid(f"Header line too long (at most {self.max_header_line} bytes)")

    def _base_url(self, request: Request) -> str:
        if self.public_endpoint:
            return self.public_endpoint
        host = request.headers.get("host") or "{}:{}".format(*(request.scope["server"] or ("", 0)))
        return f"{request.url.scheme}://{host}"

    def _versions(self, request: Request) -> dict[str, Any]:
        href = f"{self._base_url(request)}/v1/"
        return {
            "versions": [
                {"id": "v1.1", "status": "CURRENT", "links": [{"rel": "self", "href": href}]},
                {"id": "v1.0", "status": "SUPPORTED", "links": [{"rel": "self", "href": href}]},
            ]
        }


def _accepts_v1(accept: str) -> bool:
    """Whether the Accept header names the v1 media type (exactly, parameters aside)."""
    return any(
        part.split(";")[0].strip().lower() in V1_MEDIA_TYPES for part in accept.split(",")
    )


def _error(exc: GlimpseError, headers: list[tuple[bytes, bytes]]) -> Response:
    status = status_of(exc)
    if status >= 500:
        log.warning("answering %d: %s", status, exc.message)
    return text_response(status, exc.message, headers)




