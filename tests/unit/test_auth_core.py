"""Where the core asks the authenticator: after routing, before the body, never for version
discovery; its refusals answered as they are, its domain errors by the routed version."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from glimpse.api.asgi import GlimpseApp
from glimpse.api.auth import Refusal
from glimpse.app import build_app
from glimpse.domain.model import Principal
from glimpse.errors import Forbidden
from glimpse.settings import Settings


class Refusing:
    """An authenticator that refuses everything, counting what it was asked."""

    def __init__(self, error: Exception | None = None) -> None:
        self.asked: list[str] = []
        self.error = error

    async def principal(self, request: Request) -> Principal:
        self.asked.append(f"{request.method} {request.url.path}")
        raise self.error or Refusal(Response(b"no", status_code=401,
                                             headers={"WWW-Authenticate": 'Keystone uri="k"'}))


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    data_dir: Path = tmp_path_factory.mktemp("auth-core")
    return list(build_app(Settings(data_dir=data_dir)).routers)


async def call(app: GlimpseApp, method: str, path: str,
               body: bytes = b"") -> tuple[int, dict[str, str], bytes, int]:
    """Status, headers, body, and how many times the app read the request body."""
    reads = 0
    sent: list[Message] = []

    async def receive() -> Message:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    headers = [(b"host", b"testserver"), (b"content-length", str(len(body)).encode())]
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "headers": headers, "scheme": "http",
             "server": ("testserver", 80), "http_version": "1.1", "root_path": ""}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    names = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return start["status"], names, answer, reads


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_discovery_and_unrouted_requests_never_ask(routers: list[Any],
                                                         anyio_backend: str) -> None:
    auth = Refusing()
    app = GlimpseApp(routers, auth)
    assert (await call(app, "GET", "/versions"))[0] == 200
    assert (await call(app, "GET", "/"))[0] == 300
    assert (await call(app, "GET", "/v1/no-such-thing"))[0] == 404
    assert (await call(app, "PATCH", "/v1/images"))[0] == 405
    assert auth.asked == []


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_refusal_is_answered_as_is_before_the_body_is_read(
        routers: list[Any], anyio_backend: str) -> None:
    auth = Refusing()
    app = GlimpseApp(routers, auth)
    for path in ("/v1/images", "/v2/images"):
        status, headers, body, reads = await call(app, "POST", path, b"x" * 4096)
        assert (status, body, reads) == (401, b"no", 0)
        assert headers["www-authenticate"] == 'Keystone uri="k"'
    assert auth.asked == ["POST /v1/images", "POST /v2/images"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_domain_error_is_rendered_by_the_routed_version(
        routers: list[Any], anyio_backend: str) -> None:
    app = GlimpseApp(routers, Refusing(Forbidden("Only a project-scoped token")))
    status, headers, body, _ = await call(app, "GET", "/v1/images")
    assert status == 403 and b"project-scoped" in body
    assert "www-authenticate" not in headers
