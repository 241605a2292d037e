"""The version-neutral API core, seen through a second, dummy API router (v9) next to v1: version
discovery lists both, prefix and Accept routing reach each, each renders its own refusals and
errors, the shared pieces (request ids, header limits, identity, uploads, the 500 fallback)
serve both, and v1 answers as it does alone."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.asgi import GlimpseApp
from glimpse.api.auth import TrustedHeaders
from glimpse.api.http import RequestContext, json_response
from glimpse.api.routing import (
    CURRENT,
    ApiRouter,
    Match,
    Route,
    VersionEntry,
    match,
    route,
)
from glimpse.app import build_app
from glimpse.domain.model import Principal
from glimpse.errors import GlimpseError, Invalid, NotFound, Unavailable
from glimpse.settings import Settings

pytestmark = pytest.mark.anyio
REQ_ID = re.compile(
    r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)
Client = httpx.AsyncClient
V1_ACCEPT = "application/vnd.openstack.images-v1"
V9_ACCEPT = "application/vnd.openstack.images-v9"
# v1's versions document as it was before the core knew of more than one router.
V1_DOCUMENT = (
    b'{"versions": [{"id": "v1.1", "status": "CURRENT", "links": [{"rel": "self", "href": '
    b'"http://testserver/v1/"}]}, {"id": "v1.0", "status": "SUPPORTED", "links": [{"rel": '
    b'"self", "href": "http://testserver/v1/"}]}]}'
)


@dataclasses.dataclass
class V9Context(RequestContext):
    """The dummy's handlers get a context of their own, as v2's will."""


V9Handler = Callable[[V9Context], Any]
V9_STATUS: dict[type[GlimpseError], int] = {Invalid: 400, NotFound: 404, Unavailable: 503}


class V9Api:
    """A second API version that answers in JSON, refusals included."""

    prefixes = frozenset({"v9"})
    media_types = frozenset({V9_ACCEPT})
    # Asks for CURRENT on its lower entry: the core still makes only the highest one CURRENT.
    versions = (VersionEntry("v9.0", CURRENT, "/v9/"), VersionEntry("v9.1", "EXPERIMENTAL", "/v9/"))

    def __init__(self) -> None:
        self._routes: list[Route[V9Handler]] = [
            route("/things", "GET", GET=self.things),
            route("/things/(?P<thing>[^/]+)", "GET, DELETE", GET=self.thing, DELETE=self.thing),
            route("/things/(?P<thing>[^/]+)/data", "PUT", PUT=self.data),
        ]

    def match(self, method: str, path: str) -> Match[V9Handler] | None:
        return match(self._routes, method, path)

    def context(
        self, request: Request, principal: Principal, params: dict[str, str],
        base_url_of: Callable[[Request], str],
    ) -> V9Context:
        return V9Context(request, principal, params, base_url_of)

    async def things(self, ctx: V9Context) -> Response:
        return json_response({
            "api": "v9", "path": ctx.request.url.path, "tenant": ctx.principal.tenant,
            "base": ctx.base_url_of(ctx.request),
        })

    async def thing(self, ctx: V9Context) -> Response:
        thing = ctx.params["thing"]
        if thing == "boom":
            raise RuntimeError("secret detail of a bug")
        if thing == "down":
            raise Unavailable("the thing store is down")
        raise NotFound(f"no thing {thing}")

    async def data(self, ctx: V9Context) -> Response:
        upload = ctx.upload()
        if upload is None:
            return json_response({"upload": None})
        size = await ctx.run(lambda: sum(len(chunk) for chunk in upload.chunks))
        return json_response(
            {"size": size, "length": upload.length, "content_type_ok": ctx.body_type_ok()}
        )

    def error(self, error: GlimpseError, request: Request) -> Response:
        return json_response({"v9 error": error.message}, V9_STATUS.get(type(error), 500))

    def not_found(self, request: Request) -> Response:
        return json_response({"v9 error": "no such path"}, 404)

    def method_not_allowed(self, allow: str, request: Request) -> Response:
        return json_response({"v9 error": "no such method"}, 405, [(b"allow", allow.encode())])

    def not_implemented(self, request: Request) -> Response:
        return json_response({"v9 error": "unknown method"}, 501)


@pytest.fixture(scope="module")
def v1(tmp_path_factory: pytest.TempPathFactory) -> ApiRouter[Any]:
    """glimpse's own v1 router, over a SQLite database of its own."""
    data_dir: Path = tmp_path_factory.mktemp("api-core")
    return build_app(Settings(data_dir=data_dir)).routers[0]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client(*routers: ApiRouter[Any]) -> Client:
    """An HTTP client of the app over these routers, in process."""
    app = GlimpseApp(list(routers), TrustedHeaders())
    return Client(transport=httpx.ASGITransport(app), base_url="http://testserver")


@pytest.fixture
async def both(v1: ApiRouter[Any]) -> AsyncIterator[Client]:
    async with client(v1, V9Api()) as c:
        yield c


@pytest.fixture
async def alone(v1: ApiRouter[Any]) -> AsyncIterator[Client]:
    async with client(v1) as c:
        yield c


def media_type(resp: httpx.Response) -> str:
    return resp.headers["content-type"].split(";")[0]


async def chunked(chunks: list[bytes]) -> AsyncIterator[bytes]:
    """A body without a Content-Length: httpx sends it chunked."""
    for chunk in chunks:
        yield chunk


# --- version discovery ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status"), [
    ("GET", "/versions", 200), ("GET", "/", 300), ("POST", "/images", 300), ("GET", "/v2", 300),
])
async def test_v1_alone_keeps_its_versions_document_byte_for_byte(
    alone: Client, method: str, path: str, status: int
) -> None:
    resp = await alone.request(method, path)
    assert resp.status_code == status
    assert resp.content == V1_DOCUMENT


@pytest.mark.parametrize("order", ["v1 first", "v9 first"])
@pytest.mark.parametrize(("path", "status"), [("/versions", 200), ("/", 300), ("/v2/x", 300)])
async def test_discovery_lists_every_router_highest_first_with_one_current(
    v1: ApiRouter[Any], order: str, path: str, status: int
) -> None:
    routers = [v1, V9Api()] if order == "v1 first" else [V9Api(), v1]
    async with client(*routers) as c:
        resp = await c.get(path)
    assert resp.status_code == status
    assert [(v["id"], v["status"], v["links"]) for v in resp.json()["versions"]] == [
        ("v9.1", "CURRENT", [{"rel": "self", "href": "http://testserver/v9/"}]),
        ("v9.0", "SUPPORTED", [{"rel": "self", "href": "http://testserver/v9/"}]),
        ("v1.1", "SUPPORTED", [{"rel": "self", "href": "http://testserver/v1/"}]),
        ("v1.0", "SUPPORTED", [{"rel": "self", "href": "http://testserver/v1/"}]),
    ]


def test_routers_may_not_claim_the_same_prefix_media_type_or_version(
    v1: ApiRouter[Any],
) -> None:
    for clash in ("prefixes", "media_types", "versions"):
        other = V9Api()
        setattr(other, clash, getattr(v1, clash))
        with pytest.raises(ValueError):
            GlimpseApp([v1, other], TrustedHeaders())


# --- routing --------------------------------------------------------------------------------


async def test_prefix_routing_reaches_each_router(both: Client) -> None:
    v9 = await both.get("/v9/things", headers={"X-Tenant-Id": "t9"})
    assert v9.status_code == 200
    assert v9.json() == {
        "api": "v9", "path": "/v9/things", "tenant": "t9", "base": "http://testserver"
    }
    v1 = await both.get("/v1/images", headers={"X-Tenant-Id": "t1", "X-Roles": "reader"})
    assert v1.status_code == 200
    assert v1.json() == {"images": []}


@pytest.mark.parametrize(("accept", "api"), [
    (V9_ACCEPT, "v9"),
    (V1_ACCEPT, "v1"),
    ("text/html, Application/Vnd.Openstack.Images-V9; q=0.5", "v9"),
    # The first Accept entry that names a version wins.
    (f"{V9_ACCEPT}, {V1_ACCEPT}", "v9"),
    (f"{V1_ACCEPT};q=0.1, {V9_ACCEPT}", "v1"),
])
async def test_accept_routing_reaches_each_router(both: Client, accept: str, api: str) -> None:
    resp = await both.get("/things", headers={"Accept": accept})
    if api == "v9":
        assert resp.status_code == 200
        assert resp.json()["api"] == "v9"
    else:  # v1 has no /things: its own plain-text 404
        assert resp.status_code == 404
        assert resp.text == "The resource could not be found."


@pytest.mark.parametrize("accept", ["", "application/vnd.openstack.images-v8", "*/*"])
async def test_no_version_chosen_is_the_300_document(both: Client, accept: str) -> None:
    resp = await both.get("/things", headers={"Accept": accept})
    assert resp.status_code == 300
    assert [v["id"] for v in resp.json()["versions"]] == ["v9.1", "v9.0", "v1.1", "v1.0"]


# --- each router's wire form ----------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "status", "body", "allow"), [
    ("GET", "/v9/nothing", 404, {"v9 error": "no such path"}, None),
    ("GET", "/v9/things/a%00b", 404, {"v9 error": "no such path"}, None),
    ("POST", "/v9/things/x", 405, {"v9 error": "no such method"}, "GET, DELETE"),
    ("PROPFIND", "/v9/nothing", 501, {"v9 error": "unknown method"}, None),
    ("GET", "/v9/things/x", 404, {"v9 error": "no thing x"}, None),
    ("DELETE", "/v9/things/down", 503, {"v9 error": "the thing store is down"}, None),
])
async def test_the_dummy_renders_its_own_refusals_and_errors(
    both: Client, method: str, path: str, status: int, body: object, allow: str | None
) -> None:
    resp = await both.request(method, path)
    assert resp.status_code == status
    assert media_type(resp) == "application/json"
    assert resp.json() == body
    assert resp.headers.get("allow") == allow


async def test_identity_errors_are_rendered_by_the_routed_router(both: Client) -> None:
    long_tenant = {"X-Tenant-Id": "t" * 300}
    v9 = await both.get("/v9/things", headers=long_tenant)
    assert v9.status_code == 400
    assert v9.json() == {"v9 error": "Identity header values can't exceed 255 characters"}
    v1 = await both.get("/v1/images", headers=long_tenant)
    assert v1.status_code == 400
    assert media_type(v1) == "text/plain"
    assert v1.text == "Identity header values can't exceed 255 characters"


async def test_errors_before_routing_are_plain_text(both: Client) -> None:
    headers = {f"X-Junk-{i}": "x" for i in range(300)}
    for path in ("/v9/things", "/v1/images"):
        resp = await both.get(path, headers=headers)
        assert resp.status_code == 400
        assert media_type(resp) == "text/plain"
        assert resp.text == "Too many request headers (at most 256)"


async def test_server_errors_never_leak_and_are_logged(
    both: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="glimpse.request")
    resp = await both.get("/v9/things/boom")
    assert resp.status_code == 500
    request_id = resp.headers["x-openstack-request-id"]
    assert resp.text == f"Internal error; see the server log for {request_id}"
    assert "secret" not in resp.text
    assert f"{request_id} failed" in caplog.text
    await both.delete("/v9/things/down")
    assert "answering 503: the thing store is down" in caplog.text


# --- shared pieces --------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "body", "answer"), [
    ({"Content-Type": "application/octet-stream"}, b"hello",
     {"size": 5, "length": 5, "content_type_ok": True}),
    ({"Content-Type": "text/plain"}, b"hello", {"size": 5, "length": 5, "content_type_ok": False}),
    ({"Content-Type": "application/octet-stream"}, chunked([b"he", b"llo"]),
     {"size": 5, "length": None, "content_type_ok": True}),
    ({}, b"", {"upload": None}),
])
async def test_a_second_version_reads_uploads_through_the_shared_context(
    both: Client, headers: dict[str, str], body: Any, answer: object
) -> None:
    resp = await both.put("/v9/things/x/data", headers=headers, content=body)
    assert resp.status_code == 200
    assert resp.json() == answer


async def test_request_id_on_every_response(both: Client) -> None:
    junk = {f"X-Junk-{i}": "x" for i in range(300)}
    requests = [
        ("GET", "/versions", {}), ("GET", "/", {}), ("GET", "/v9/things", {}),
        ("GET", "/v9/nothing", {}), ("POST", "/v9/things/x", {}), ("GET", "/v9/things/boom", {}),
        ("GET", "/v1/images", {}), ("GET", "/v1/nothing", {}), ("PUT", "/v1/images", {}),
        ("GET", "/v1/images", junk),
    ]
    responses = [await both.request(m, path, headers=h) for m, path, h in requests]
    seen = set()
    for resp in responses:
        values = resp.headers.get_list("x-openstack-request-id")
        assert len(values) == 1, resp.request.url
        assert REQ_ID.match(values[0])
        seen.add(values[0])
    assert len(seen) == len(responses)


# --- v1 unchanged ---------------------------------------------------------------------------

V1_REQUESTS: list[tuple[str, str, dict[str, str]]] = [
    ("GET", "/v1/images", {}), ("GET", "/v1/", {}), ("GET", "/v1", {}),
    ("GET", "/v1.0/images/detail", {}), ("HEAD", "/v1.1/images/detail", {}),
    ("GET", "/images", {"Accept": V1_ACCEPT}), ("PUT", "/v1/images", {}),
    ("GET", "/v1/nothing", {}), ("OPTIONS", "/v1/nothing", {}), ("PROPFIND", "/v1/images", {}),
    ("GET", "/v1/images/a%00b", {}), ("GET", "/v1/versions", {}),
    ("GET", "/v1/images/6b3ecfca-d445-4946-a8d1-c4938352b251", {}),
    ("POST", "/v1/images", {"x-image-meta-foo": "bar"}),
    ("GET", "/v1/images?limit=x", {}),
]


@pytest.mark.parametrize(("method", "path", "headers"), V1_REQUESTS)
async def test_v1_answers_next_to_another_router_as_it_does_alone(
    alone: Client, both: Client, method: str, path: str, headers: dict[str, str]
) -> None:
    answers = []
    for c in (alone, both):
        resp = await c.request(method, path, headers=headers)
        answers.append((
            resp.status_code,
            [(k, v) for k, v in resp.headers.items() if k != "x-openstack-request-id"],
            resp.content,
        ))
    assert answers[0] == answers[1]


@pytest.mark.parametrize(("method", "path", "status", "text", "allow"), [
    ("GET", "/v1/nothing", 404, "The resource could not be found.", None),
    ("PUT", "/v1/images", 405, "Method Not Allowed", "GET, POST"),
    ("HEAD", "/v1/images/detail", 405, "", "GET"),
    ("DELETE", "/v1.0/images/detail", 405, "Method Not Allowed", "GET, HEAD"),
    ("OPTIONS", "/v1/nothing", 501, "Not Implemented", None),
    ("GET", "/v1/images/6b3ecfca-d445-4946-a8d1-c4938352b251", 404,
     "Image 6b3ecfca-d445-4946-a8d1-c4938352b251 not found.", None),
])
async def test_v1_refusals_are_plain_text_as_before(
    both: Client, method: str, path: str, status: int, text: str, allow: str | None
) -> None:
    resp = await both.request(method, path)
    assert resp.status_code == status
    assert media_type(resp) == "text/plain"
    assert resp.text == text
    assert resp.headers.get("allow") == allow

