"""/healthcheck's wire form (oslo.middleware's) and its probes, through the ASGI core."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from glimpse.api.asgi import GlimpseApp
from glimpse.api.health import HealthCheck, Probe, ProbeFailed, negotiate
from glimpse.api.routing import template_of
from glimpse.app import build_app
from glimpse.errors import Unavailable
from glimpse.settings import Settings

pytestmark = pytest.mark.anyio
SECRET = "Zq8-never-show-me"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_with(tmp_path: Path, health: HealthCheck) -> GlimpseApp:
    app = build_app(Settings(data_dir=tmp_path))
    app.health = health
    return app


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(Settings(data_dir=tmp_path))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        yield c


@pytest.mark.parametrize(("accept", "offer"), [
    (None, "text/plain"),
    ("", "text/plain"),
    ("*/*", "text/plain"),
    ("application/json", "application/json"),
    ("text/html", "text/html"),
    ("text/*", "text/plain"),
    ("text/html, application/json", "text/html"),  # equal quality: oslo's order
    ("application/json, text/html", "text/html"),
    ("application/json;q=1, text/html;q=0.5", "application/json"),
    ("text/plain;q=0, */*", "text/html"),
    ("image/png", "text/plain"),  # nothing acceptable: text/plain, never 406
    ("garbage", "text/plain"),
    ("application/json;q=abc", "text/plain"),
])
def test_accept_negotiation_follows_webob(accept: str | None, offer: str) -> None:
    assert negotiate(accept) == offer


async def test_plain_forms(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthcheck")
    assert (resp.status_code, resp.text) == (200, "OK")
    assert resp.headers["content-type"] == "text/plain; charset=UTF-8"
    assert resp.headers["x-openstack-request-id"].startswith("req-")
    head = await client.head("/healthcheck")
    assert (head.status_code, head.content) == (204, b"")
    resp = await client.get("/healthcheck", headers={"accept": "application/json"})
    assert resp.headers["content-type"] == "application/json"
    assert resp.text == json.dumps({"detailed": False, "reasons": ["OK"]}, indent=4,
                                   sort_keys=True)
    resp = await client.get("/healthcheck", headers={"accept": "text/html"})
    assert resp.headers["content-type"] == "text/html; charset=UTF-8"
    assert "<H2>Result of 1 checks:</H2>" in resp.text and "<TD>OK</TD>" in resp.text


async def test_plain_form_probes_nothing(tmp_path: Path) -> None:
    called = []
    app = app_with(tmp_path, HealthCheck(probes=[Probe("db", "X", lambda: called.append(1) or "")]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/healthcheck")).status_code == 200
        # HEAD never runs the detailed checks either: it has no body to show them in.
        assert (await c.head("/healthcheck?detailed=true")).status_code == 204
    assert called == []


async def test_disable_by_file(tmp_path: Path) -> None:
    marker = tmp_path / "disable"
    app = app_with(tmp_path, HealthCheck(disable_file=str(marker)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        assert (await c.get("/healthcheck")).text == "OK"
        marker.touch()
        resp = await c.get("/healthcheck")
        assert (resp.status_code, resp.text) == (503, "DISABLED BY FILE")
        assert (await c.head("/healthcheck")).status_code == 503
        detailed = (await c.get("/healthcheck?detailed=true",
                                headers={"accept": "application/json"})).json()
        assert detailed["reasons"][0] == {"class": "DisableByFileHealthcheck",
                                          "reason": "DISABLED BY FILE",
                                          "details": f"Path '{marker}' was found"}


async def test_detailed_form_is_for_admins(client: httpx.AsyncClient) -> None:
    member = {"x-tenant-id": "t1", "x-roles": "member"}
    resp = await client.get("/healthcheck?detailed=true", headers=member)
    assert resp.status_code == 403
    admin = {"x-tenant-id": "t1", "x-roles": "admin", "accept": "application/json"}
    resp = await client.get("/healthcheck?detailed=true", headers=admin)
    assert resp.status_code == 200
    body = resp.json()
    assert body["detailed"] is True
    assert {"gc", "now", "platform", "python_version", "threads", "greenthreads"} <= set(body)
    kinds = [(r["class"], r["reason"]) for r in body["reasons"]]
    assert kinds == [("DisableByFileHealthcheck", "OK"), ("DatabaseCheck", "OK"),
                     ("StoreCheck", "OK")]
    assert body["reasons"][2]["details"].startswith("store 'file': answered in ")
    text = await client.get("/healthcheck?detailed=true", headers=member | {"x-roles": "admin"})
    assert text.text == "OK\nOK\nOK"
    page = await client.get("/healthcheck?detailed=1",
                            headers=member | {"x-roles": "admin", "accept": "text/html"})
    assert "<H1>Server status</H1>" in page.text and "<TD>StoreCheck</TD>" in page.text


def _failing() -> str:
    raise RuntimeError(f"connection to postgresql://glimpse:{SECRET}@db/x refused")


def _unavailable() -> str:
    raise Unavailable("Store swift is unreachable")


def _probe_failed() -> str:
    raise ProbeFailed("quota <exceeded>")


async def test_failures_are_503_with_a_reason_and_no_secret(tmp_path: Path) -> None:
    health = HealthCheck(probes=[Probe("database", "DatabaseCheck", _failing),
                                 Probe("store 'swift'", "StoreCheck", _unavailable),
                                 Probe("store 'x'", "StoreCheck", _probe_failed)])
    app = app_with(tmp_path, health)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        resp = await c.get("/healthcheck?detailed=true", headers={"accept": "application/json"})
        assert resp.status_code == 503
        reasons = resp.json()["reasons"]
        assert [r["reason"] for r in reasons] == [
            "OK", "database unavailable", "store 'swift' unavailable", "store 'x' unavailable"]
        assert reasons[1]["details"] == "RuntimeError (see the server log)"
        assert reasons[2]["details"] == "Store swift is unreachable"
        assert SECRET not in resp.text and "Traceback" not in resp.text
        page = await c.get("/healthcheck?detailed=true", headers={"accept": "text/html"})
        assert page.status_code == 503 and "quota &lt;exceeded&gt;" in page.text
        # The plain form checks no dependency: a load balancer keeps the node.
        assert (await c.get("/healthcheck")).status_code == 200


async def test_a_hanging_probe_times_out_and_is_not_started_twice(tmp_path: Path) -> None:
    release = threading.Event()
    calls = []

    def hang() -> str:
        calls.append(1)
        release.wait(10)
        return "late"

    health = HealthCheck(probes=[Probe("database", "DatabaseCheck", hang)], timeout=0.2)
    app = app_with(tmp_path, health)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app),
                                     base_url="http://t") as c:
            for _ in range(3):
                resp = await c.get("/healthcheck?detailed=true",
                                   headers={"accept": "application/json"})
                assert resp.status_code == 503
            details = [r["details"] for r in resp.json()["reasons"]]
            assert "has not answered" in details[1]
        assert calls == [1]  # one thread stuck, not one per check
    finally:
        release.set()


def test_route_templates() -> None:
    assert template_of("/images/(?P<image_id>[^/]+)/file") == "/images/{image_id}/file"
    assert template_of("/?") == "/"
    assert template_of("/images/(?P<image_id>[^/]+)/members/(?P<member>[^/]+)") == (
        "/images/{image_id}/members/{member}")
