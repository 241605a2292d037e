"""The database going away under load: 503 with a clear message, never a 500 or a traceback,
and the service recovers by itself. Runs once per server kind on a database of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests import databases
from tests.e2e.server import GlimpseServer

pytestmark = pytest.mark.own_databases


@pytest.fixture(params=["postgresql", "mariadb"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from databases.or_skip(request.param)


def check(resp: httpx.Response) -> bool:
    """True when the request worked; an outage must be a clean 503."""
    if resp.status_code < 400:
        return True
    assert resp.status_code == 503, (resp.status_code, resp.text)
    assert "database is unavailable" in resp.text and "Traceback" not in resp.text
    return False


def test_killed_connections_and_an_outage_give_503_then_recovery(database_url: str) -> None:
    # MariaDB refuses a locked user, not a database: the server gets a user of its own.
    server_url = database_url if "postgresql" in database_url else databases.own_user(
        database_url)
    srv = GlimpseServer({"database_url": server_url})
    try:
        made = httpx.post(srv.url + "/v1/images", headers={"x-image-meta-name": "outage"})
        image_id = made.json()["image"]["id"]
        stop = threading.Event()
        outcomes: list[bool] = []

        def load() -> None:
            with httpx.Client(base_url=srv.url, timeout=30) as client:
                for i in range(400):  # bounded in count and time
                    if stop.is_set():
                        return
                    outcomes.append(check(client.put(f"/v1/images/{image_id}", headers={
                        "x-glance-registry-purge-props": "false",
                        f"x-image-meta-property-k{i % 5}": str(i)})))
                    outcomes.append(check(client.get("/v1/images/detail")))

        workers = [threading.Thread(target=load) for _ in range(3)]
        for w in workers:
            w.start()
        killed = 0
        for _ in range(5):  # kill the server's sessions mid-run, repeatedly
            time.sleep(0.3)
            killed += databases.kill_connections(database_url)
        # Then a real outage: no new session can be opened for a while.
        databases.set_reachable(server_url, False)
        databases.kill_connections(database_url)
        time.sleep(1.0)
        during = [check(httpx.get(srv.url + "/v1/images/detail", timeout=30)) for _ in range(3)]
        databases.set_reachable(server_url, True)
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join(60)
        assert killed > 0
        assert during == [False, False, False]
        assert any(outcomes)
        # Recovered by itself: every request works again.
        after = [check(httpx.head(f"{srv.url}/v1/images/{image_id}", timeout=30))
                 for _ in range(5)]
        assert after == [True] * 5
        assert "Traceback" not in srv.log() or "database unavailable" in srv.log()
    finally:
        srv.stop()
