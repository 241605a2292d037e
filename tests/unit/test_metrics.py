"""Metrics: the labels the ASGI core reports (bounded whatever the path), the Prometheus
recorder in multiprocess mode (in a child process: prometheus_client picks its mode at
import), the store wrapper's error counting, and the JSON log form."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest

from glimpse.app import build_app
from glimpse.errors import NotFound, Unavailable
from glimpse.log_format import REQUEST_IDS, JsonFormatter, RequestIds
from glimpse.metrics import NullRecorder
from glimpse.settings import Settings
from glimpse.stores.memory import MemoryStore
from glimpse.stores.observed import ObservedStore, probe

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclasses.dataclass
class Seen:
    method: str
    route: str
    status: int
    bytes_in: int
    bytes_out: int


class Recording(NullRecorder):
    """Keeps each request it is told of; ignores the rest."""

    def __init__(self) -> None:
        self.requests: list[Seen] = []

    def request(self, method: str, route: str, status: int, seconds: float,
                bytes_in: int, bytes_out: int) -> None:
        assert seconds >= 0
        self.requests.append(Seen(method, route, status, bytes_in, bytes_out))


async def test_requests_are_labelled_by_route_template(tmp_path: Path) -> None:
    app = build_app(Settings(data_dir=tmp_path))
    seen = Recording()
    app.metrics = seen
    image = str(uuid.uuid4())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as c:
        made = await c.post("/v2/images", json={"id": image, "disk_format": "raw",
                                                "container_format": "bare"})
        assert made.status_code == 201
        await c.put(f"/v2/images/{image}/file", content=b"x" * 1000,
                    headers={"content-type": "application/octet-stream"})
        await c.get(f"/v2.1/images/{image}/file")
        await c.get(f"/v1/images/{'z' * 5000}")
        await c.get("/v1/images/%0d%0aforged%00/members")
        await c.get("/" + "a/" * 300)
        await c.get("/versions")
        await c.get("/healthcheck")
        await c.get("/")
    routes = [(s.method, s.route, s.status) for s in seen.requests]
    assert routes == [
        ("POST", "/v2/images", 201),
        ("PUT", "/v2/images/{image_id}/file", 204),
        ("GET", "/v2/images/{image_id}/file", 200),
        ("GET", "/v1/images/{image_id}", 404),
        ("GET", "unmatched", 404),  # a NUL in a path is matched by no route
        ("GET", "unmatched", 300),
        ("GET", "/versions", 200),
        ("GET", "/healthcheck", 200),
        ("GET", "unmatched", 300),
    ]
    assert seen.requests[1].bytes_in == 1000
    assert seen.requests[2].bytes_out == 1000


RECORDER_RUN = """
import sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import create_engine, text
from sqlalchemy.pool import QueuePool
from glimpse.metrics import PrometheusRecorder

recorder = PrometheusRecorder()
recorder.request("GET", "/v2/images", 200, 0.003, 0, 512)
recorder.request("BREW", "unmatched", 501, 0.001, 10, 0)
recorder.transfer("upload", 1)
recorder.transfer("upload", 1)
recorder.transfer("upload", -1)
recorder.store_error("file", "put")
engine = create_engine("sqlite://", poolclass=QueuePool, pool_size=3)
recorder.watch_pool(engine)
conn = engine.connect()
conn.execute(text("SELECT 1"))
conn2 = engine.connect()
conn2.close()
recorder.later("cache_events", 2, "hit")
registry = CollectorRegistry()
MultiProcessCollector(registry, sys.argv[1])
sys.stdout.write(generate_latest(registry).decode())
"""


def test_prometheus_recorder_in_multiprocess_mode(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", RECORDER_RUN, str(tmp_path)], env=env,
                         capture_output=True, text=True, check=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(out) for s in family.samples}
    assert samples[("glimpse_http_requests_total",
                    (("method", "GET"), ("route", "/v2/images"), ("status", "200")))] == 1
    assert samples[("glimpse_http_requests_total",
                    (("method", "other"), ("route", "unmatched"), ("status", "501")))] == 1
    assert samples[("glimpse_http_request_duration_seconds_bucket",
                    (("le", "0.005"), ("method", "GET"), ("route", "/v2/images")))] == 1
    assert samples[("glimpse_http_response_body_bytes_total", (("route", "/v2/images"),))] == 512
    assert samples[("glimpse_http_request_body_bytes_total", (("route", "unmatched"),))] == 10
    assert samples[("glimpse_transfers_in_progress", (("kind", "upload"),))] == 1
    assert samples[("glimpse_transfers_in_progress", (("kind", "import"),))] == 0
    assert samples[("glimpse_store_errors_total", (("operation", "put"), ("store", "file")))] == 1
    assert samples[("glimpse_db_pool_connections", (("state", "pool_size"),))] == 3
    assert samples[("glimpse_db_pool_connections", (("state", "checked_out"),))] == 1
    assert samples[("glimpse_cache_events_total", (("event", "hit"),))] == 2
    # Not fed: not exported (no zero that would pass for a real value).
    names = {name for name, _ in samples}
    assert "glimpse_cache_size_bytes" not in names
    assert "glimpse_notifications_dropped_total" not in names


class Failing(MemoryStore):
    def __init__(self) -> None:
        super().__init__("broken")
        self.fail_put = False

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        if self.fail_put:
            raise Unavailable("Store broken is unreachable")
        return super().put(key, chunks)

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        inner = super().open(key, offset, length)

        def cut() -> Iterator[bytes]:
            yield next(inner)
            raise Unavailable("Store broken broke off while sending image data")

        return cut()


def test_observed_store_counts_the_stores_failures_only() -> None:
    errors: list[tuple[str, str]] = []
    inner = Failing()
    store = ObservedStore(inner, lambda name, op: errors.append((name, op)))

    def client_hangs_up() -> Iterator[bytes]:
        yield b"a"
        raise OSError("client went away")

    with pytest.raises(OSError):
        store.put("k", client_hangs_up())
    assert errors == []  # the data failed, not the store
    store.put("k", [b"abc", b"def"])
    with pytest.raises(NotFound):
        store.size("missing")
    with pytest.raises(NotFound):
        store.open("missing")
    assert errors == []  # a missing object is an answer
    with pytest.raises(Unavailable):
        list(store.open("k"))
    inner.fail_put = True
    with pytest.raises(Unavailable):
        store.put("k2", [b"x"])
    assert errors == [("broken", "get"), ("broken", "put")]
    assert store.name == "broken" and store.writable
    assert probe(inner) == "answered"


def test_json_log_lines_carry_the_request_ids() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.json_log")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("outside %s", "any request")
        token = REQUEST_IDS.set(RequestIds("req-local", "req-global"))
        try:
            logger.warning("GET /v1/images/\r\n2001-01-01 forged \u2028 http://u:s3cr3t@h/x")
            try:
                raise ValueError("bad\nvalue at http://user:pw-secret@host/")
            except ValueError:
                logger.exception("failed")
        finally:
            REQUEST_IDS.reset(token)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert (first["request_id"], first["global_request_id"]) == (None, None)
    assert (second["request_id"], second["global_request_id"]) == ("req-local", "req-global")
    assert second["message"] == ("GET /v1/images/\\r\\n2001-01-01 forged \\u2028 "
                                 "http://***@h/x")
    assert third["level"] == "ERROR" and "Traceback" in third["exception"]
    assert "pw-secret" not in out.getvalue() and "s3cr3t" not in out.getvalue()
    assert "\u2028" not in out.getvalue()


async def test_request_ids_reach_the_threads_handlers_run_in() -> None:
    from glimpse.api.http import in_thread

    token = REQUEST_IDS.set(RequestIds("req-local", None))
    try:
        assert await in_thread(REQUEST_IDS.get) == RequestIds("req-local", None)
    finally:
        REQUEST_IDS.reset(token)


def test_metrics_directories_are_fresh_and_abandoned_ones_removed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from glimpse import metrics

    monkeypatch.setattr(metrics.tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv(metrics.DIRECTORY_ENV, raising=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    abandoned = tmp_path / f"glimpse-metrics-{dead}-abc"
    abandoned.mkdir()
    (abandoned / "counter_1.db").write_bytes(b"x")
    live = tmp_path / f"glimpse-metrics-{os.getpid()}-def"
    live.mkdir()
    assert metrics.prepare(Settings(data_dir=tmp_path)) is None  # metrics off: nothing
    directory = metrics.prepare(Settings(data_dir=tmp_path, metrics_port=9999))
    assert directory is not None and directory.is_dir() and not list(directory.iterdir())
    assert os.environ[metrics.DIRECTORY_ENV] == str(directory)
    assert not abandoned.exists() and live.exists()
    metrics.remove(directory)
    assert not directory.exists()


def test_background_tasks_keep_the_request_ids_of_their_request() -> None:
    from glimpse.app import RequestContextExecutor

    with RequestContextExecutor(max_workers=1) as executor:
        token = REQUEST_IDS.set(RequestIds("req-started-it", "req-global"))
        try:
            future = executor.submit(REQUEST_IDS.get)
        finally:
            REQUEST_IDS.reset(token)
        assert future.result() == RequestIds("req-started-it", "req-global")
        assert executor.submit(REQUEST_IDS.get).result() is None
