"""Fixtures for end-to-end tests: real server processes spoken to over HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.server import GlimpseServer


@pytest.fixture(scope="session")
def server() -> Iterator[GlimpseServer]:
    """One shared server with the default settings. Tests must not assume it is empty."""
    srv = GlimpseServer()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def database(server: GlimpseServer) -> Iterator[sa.Engine]:
    """The shared server's database, as the server itself reaches it: for tests that make
    states no API call makes yet (memberships pending or rejected, say)."""
    url = os.environ.get("GLIMPSE_TEST_DATABASE_URL") or (
        f"sqlite:///{(server.data_dir / 'glimpse.sqlite').resolve()}")
    engine = sa.create_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., GlimpseServer]]:
    """A dedicated server with some settings: ``server_factory(image_property_quota=2)``."""
    started: list[GlimpseServer] = []

    def start(**settings: object) -> GlimpseServer:
        srv = GlimpseServer({k: str(v) for k, v in settings.items()})
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: GlimpseServer) -> Iterator[httpx.Client]:
    """A client of the shared server, one per module (building one per test is slow)."""
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


@pytest.fixture
def unique() -> str:
    """A unique string to tag the images a test creates, so lists can be filtered by it."""
    return uuid.uuid4().hex
