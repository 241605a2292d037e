"""Health, metrics and logs through real server processes (docs/operations.md).

/healthcheck in oslo.middleware's format (plain for anyone, unauthenticated in keystone mode
too; detailed for admins, probing the database and every store); /metrics on a listener of
its own, adding up every worker's values, parsed by prometheus_client's own parser, with label
sets that hostile paths and methods cannot grow; JSON logs whose every line carries the request
id and a valid global request id, and no raw client text or secret.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests import databases, keystone
from tests.e2e.server import GlimpseServer, free_port

pytestmark = pytest.mark.e2e

SECRET = "Zq8-ops-never-log-me"
JSON = {"accept": "application/json"}
ADMIN = {"x-tenant-id": "ops-admin", "x-roles": "admin"}
MEMBER = {"x-tenant-id": "ops-member", "x-roles": "member"}
GLOBAL_ID = f"req-{uuid.uuid4()}"
KNOWN_ROUTES_PREFIXES = ("/v1", "/v2")


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_healthcheck_forms(client: httpx.Client) -> None:
    plain = client.get("/healthcheck")
    assert (plain.status_code, plain.text) == (200, "OK")
    assert plain.headers["content-type"] == "text/plain; charset=UTF-8"
    assert client.head("/healthcheck").status_code == 204
    assert client.get("/healthcheck", headers=JSON).json() == {"detailed": False,
                                                               "reasons": ["OK"]}
    assert "<TITLE>Healthcheck Status</TITLE>" in client.get(
        "/healthcheck", headers={"accept": "text/html"}).text
    assert client.get("/healthcheck?detailed=true", headers=MEMBER).status_code == 403
    detailed = client.get("/healthcheck?detailed=true", headers={**ADMIN, **JSON})
    assert detailed.status_code == 200
    reasons = detailed.json()["reasons"]
    assert [r["class"] for r in reasons] == ["DisableByFileHealthcheck", "DatabaseCheck",
                                             "StoreCheck"]
    assert all(r["reason"] == "OK" for r in reasons)
    # Metrics are off by default, and never on the API's port.
    assert "glimpse_http_requests_total" not in client.get("/metrics").text


def test_disable_file_and_failing_store(tmp_path_factory: pytest.TempPathFactory) -> None:
    marker = tmp_path_factory.mktemp("health") / "disable"
    # A second store (S3) whose endpoint answers nothing; its secret must never be shown.
    srv = GlimpseServer({
        "healthcheck_disable_file": str(marker), "healthcheck_timeout": "5",
        "default_store_driver": "s3", "default_store": "s3",
        "default_store_bucket": "b", "default_store_access_key": "ak",
        "default_store_secret_key": SECRET,
        "default_store_endpoint_url": f"http://127.0.0.1:{free_port()}",
        "default_store_retries": "0", "default_store_timeout": "2",
    })
    try:
        assert httpx.get(srv.url + "/healthcheck").status_code == 200
        resp = httpx.get(srv.url + "/healthcheck?detailed=true", headers=JSON, timeout=30)
        assert resp.status_code == 503
        failed = [r for r in resp.json()["reasons"] if r["reason"] != "OK"]
        assert failed == [{"class": "StoreCheck", "reason": "store 's3' unavailable",
                           "details": "Store s3 is unreachable"}]
        marker.touch()
        resp = httpx.get(srv.url + "/healthcheck")
        assert (resp.status_code, resp.text) == (503, "DISABLED BY FILE")
        assert httpx.head(srv.url + "/healthcheck").status_code == 503
        for form in ({}, JSON, {"accept": "text/html"}):
            text = httpx.get(srv.url + "/healthcheck?detailed=true", headers=form,
                             timeout=30).text
            assert SECRET not in text and "Traceback" not in text
        assert SECRET not in srv.log()
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def metered() -> Iterator[GlimpseServer]:
    """Two workers, metrics on a port of their own, JSON logs."""
    port = free_port()
    srv = GlimpseServer({"workers": "2", "metrics_port": str(port), "log_format": "json"})
    yield srv
    srv.stop()


def test_metrics_add_up_every_worker(metered: GlimpseServer) -> None:
    metrics_url = metered.metrics_url
    before = scrape(metrics_url)
    count = 60
    for _ in range(count):  # a connection each, so both workers serve some
        assert httpx.get(metered.url + "/v2/images", headers=MEMBER).status_code == 200
    after = scrape(metrics_url)
    key = {"method": "GET", "route": "/v2/images", "status": "200"}
    assert value(after, "glimpse_http_requests_total", **key) - value(
        before, "glimpse_http_requests_total", **key) == count
    lines = [json.loads(line) for line in metered.log().splitlines() if line.strip()]
    pids = {line["process"] for line in lines if "GET /v2/images 200" in line["message"]}
    assert len(pids) == 2, "both workers served requests"
    latency = value(after, "glimpse_http_request_duration_seconds_count", method="GET",
                    route="/v2/images")
    assert latency >= count
    assert value(after, "glimpse_db_pool_connections", state="pool_size") == 80  # 2 x 40


def test_transfers_bytes_and_store_metrics(metered: GlimpseServer) -> None:
    metrics_url = metered.metrics_url
    made = httpx.post(metered.url + "/v1/images", headers={
        **MEMBER, "x-image-meta-name": "ops", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare"})
    image_id = made.json()["image"]["id"]
    started = threading.Event()
    release = threading.Event()
    block = b"\0" * (256 << 10)

    def body() -> Iterator[bytes]:
        yield block
        started.set()
        release.wait(20)
        yield block

    result: list[int] = []
    upload = threading.Thread(target=lambda: result.append(httpx.put(
        f"{metered.url}/v1/images/{image_id}", content=body(), timeout=30,
        headers={**MEMBER, "content-type": "application/octet-stream"}).status_code))
    upload.start()
    try:
        assert started.wait(10)
        deadline = time.monotonic() + 10
        while value(scrape(metrics_url), "glimpse_transfers_in_progress", kind="upload") != 1:
            assert time.monotonic() < deadline, "the upload never showed as in progress"
            time.sleep(0.1)
    finally:
        release.set()
        upload.join(30)
    assert result == [200]
    data = httpx.get(f"{metered.url}/v1/images/{image_id}", headers=MEMBER)
    assert len(data.content) == 2 * len(block)
    samples = scrape(metrics_url)
    assert value(samples, "glimpse_transfers_in_progress", kind="upload") == 0
    route = "/v1/images/{image_id}"
    assert value(samples, "glimpse_http_request_body_bytes_total", route=route) >= 2 * len(block)
    assert value(samples, "glimpse_http_response_body_bytes_total", route=route) >= 2 * len(
        block)  # a zero-copy file send counts too
    assert value(samples, "glimpse_db_pool_connections", state="checked_out") >= 0


def test_hostile_requests_add_no_series(metered: GlimpseServer) -> None:
    metrics_url = metered.metrics_url
    with httpx.Client(base_url=metered.url, timeout=10) as c:
        c.get("/v2/images")  # every worker has a series or two already
        before = scrape(metrics_url)
        for i in range(100):
            c.get(f"/{uuid.uuid4()}/{i}")
            c.get(f"/v1/images/{uuid.uuid4()}/members/{'m' * (i + 1)}")
        c.get("/v2/images/%0d%0a%1b[31m/tags/%00")
        c.get("/" + "x" * 8000)
        c.get("/v2/" + "../" * 2000)
        for method in ("BREW", "PROPFIND", "X" * 200):
            c.request(method, f"/v2/images/{uuid.uuid4()}")
        c.get("/v2/images", headers={"x-weird": "\x7f" * 10000, "x-tenant-id": "t" * 300})
    after = scrape(metrics_url)
    routes = {dict(labels).get("route") for _, labels in after} - {None}
    for route in routes:
        assert route in ("unmatched", "/versions", "/healthcheck") or (
            route.startswith(KNOWN_ROUTES_PREFIXES) and "x" * 20 not in route), route
        assert len(route) < 60
    methods = {dict(labels).get("method") for _, labels in after} - {None}
    assert methods <= {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other"}
    # 200 unknown paths and three unknown methods made a handful of series, not hundreds.
    assert len(after) - len(before) < 120
    assert httpx.get(metered.url + "/healthcheck").status_code == 200


def test_json_logs_carry_request_ids(metered: GlimpseServer) -> None:
    resp = httpx.get(metered.url + "/v2/images",
                     headers={**MEMBER, "x-openstack-request-id": GLOBAL_ID})
    local = resp.headers["x-openstack-request-id"]
    assert local != GLOBAL_ID
    bogus = "req-not-a-uuid-" + "Zq" * 500
    bogus_resp = httpx.get(metered.url + "/v2/images",
                           headers={**MEMBER, "x-openstack-request-id": bogus})
    # A location with credentials: refused, and the secret reaches no log line.
    httpx.post(metered.url + "/v1/images", headers={
        **MEMBER, "x-image-meta-name": "x", "x-image-meta-disk_format": "raw",
        "x-image-meta-container_format": "bare",
        "x-image-meta-location": f"http://user:{SECRET}@127.0.0.1:1/x"})
    httpx.get(metered.url + "/v1/images/%0d%0a2001-01-01%20forged")
    time.sleep(0.3)
    log = metered.log()
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]  # every line
    assert all({"time", "level", "logger", "message", "request_id", "global_request_id"}
               <= set(line) for line in lines)
    mine = [line for line in lines if line["request_id"] == local]
    assert mine and all(line["global_request_id"] == GLOBAL_ID for line in mine)
    theirs = [line for line in lines
              if line["request_id"] == bogus_resp.headers["x-openstack-request-id"]]
    assert theirs and all(line["global_request_id"] is None for line in theirs)
    assert "req-not-a-uuid" not in log and SECRET not in log
    forged = [line["message"] for line in lines if "forged" in line["message"]]
    # Escaped in the message itself, so even a reader printing it sees one line.
    assert forged and all("\\r\\n2001-01-01 forged" in m and "\r" not in m for m in forged)
    assert "\r" not in log


def test_keystone_mode_plain_health_needs_no_token() -> None:
    # A Keystone that does not answer: the server starts, refuses API calls, and still
    # answers load balancers.
    srv = GlimpseServer(keystone.glimpse_settings(
        keystone_auth_url=f"http://127.0.0.1:{free_port()}/v3", keystone_timeout=1))
    try:
        assert httpx.get(srv.url + "/healthcheck").text == "OK"
        assert httpx.head(srv.url + "/healthcheck").status_code == 204
        assert httpx.get(srv.url + "/v2/images").status_code == 401
        assert httpx.get(srv.url + "/healthcheck?detailed=true").status_code == 401
        assert keystone.PASSWORD not in srv.log()
    finally:
        srv.stop()


def test_keystone_mode_detailed_health_for_admins_only() -> None:
    keystone.require_identity()
    member_password = "ops-member-Pw-x7Qzx7Qz"
    project = keystone.ensure_project("glimpse-e2e-ops")
    keystone.ensure_user("glimpse-e2e-ops-member", member_password, project, "member")
    member = keystone.token_for("glimpse-e2e-ops-member", member_password, "glimpse-e2e-ops")
    admin = str(keystone.admin().get_token())
    srv = GlimpseServer(keystone.glimpse_settings())
    try:
        assert httpx.get(srv.url + "/healthcheck").text == "OK"
        assert httpx.get(srv.url + "/healthcheck?detailed=true",
                         headers={"x-auth-token": member}).status_code == 403
        resp = httpx.get(srv.url + "/healthcheck?detailed=true",
                         headers={"x-auth-token": admin, **JSON}, timeout=30)
        assert resp.status_code == 200 and resp.json()["detailed"] is True
    finally:
        srv.stop()


@pytest.fixture(params=["postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from databases.or_skip(request.param)


@pytest.mark.own_databases
def test_database_down_makes_detailed_health_503(database_url: str) -> None:
    server_url = database_url if "postgresql" in database_url else databases.own_user(
        database_url)
    srv = GlimpseServer({"database_url": server_url, "healthcheck_timeout": "5"})
    try:
        detailed = srv.url + "/healthcheck?detailed=true"
        assert httpx.get(detailed, headers=JSON).status_code == 200
        databases.set_reachable(server_url, False)
        databases.kill_connections(database_url)
        try:
            resp = httpx.get(detailed, headers=JSON, timeout=30)
            assert resp.status_code == 503, resp.text
            failed = [r for r in resp.json()["reasons"] if r["reason"] != "OK"]
            assert [r["reason"] for r in failed] == ["database unavailable"]
            assert "OperationalError" in failed[0]["details"] or "no answer" in failed[0][
                "details"]
            text = httpx.get(detailed, timeout=30)
            assert text.status_code == 503 and "database unavailable" in text.text
            password = sa.make_url(server_url).password
            assert "Traceback" not in resp.text and (not password or password not in resp.text)
            # Load balancers keep the node: the plain form checks no dependency.
            assert httpx.get(srv.url + "/healthcheck").status_code == 200
        finally:
            databases.set_reachable(server_url, True)
        deadline = time.monotonic() + 20
        while httpx.get(detailed, timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the health check did not recover"
            time.sleep(0.3)
    finally:
        srv.stop()

