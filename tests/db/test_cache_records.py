"""The image cache's records (glimpse.db.cache_records) on SQLite, PostgreSQL and MariaDB:
which node holds which image, hits and last use, removal per node and per image."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.cache_records import SqlCacheRecords
from tests import databases


@pytest.fixture(scope="module", params=databases.ENGINES)
def records(request: pytest.FixtureRequest) -> Iterator[SqlCacheRecords]:
    for url in databases.or_skip(request.param):
        engine = db_engine.create_engine(url)
        db_engine.upgrade(engine)
        yield SqlCacheRecords(engine)
        engine.dispose()


def test_nodes_hits_and_removal(records: SqlCacheRecords) -> None:
    image, other = str(uuid.uuid4()), str(uuid.uuid4())
    a, b = f"host-a/{uuid.uuid4().hex}", f"host-b/{uuid.uuid4().hex}"
    records.add(a, "http://a:9292", image, 1 << 40)  # sizes past 32 bits
    records.add(b, "http://b:9292", image, 1 << 40)
    records.add(a, "http://a:9292", other, 5)
    assert records.nodes(image) == ["http://a:9292", "http://b:9292"]
    records.hit(a, image)
    records.hit(a, image)
    on_a = {c.image_id: c for c in records.on_node(a)}
    assert set(on_a) == {image, other}
    assert (on_a[image].size, on_a[image].hits) == (1 << 40, 2)
    assert on_a[image].last_accessed >= on_a[image].last_modified
    assert on_a[image].last_accessed.tzinfo is not None
    # A refill starts the record again; removing is per node.
    records.add(a, "http://a:9292", image, 7)
    assert [(c.size, c.hits) for c in records.on_node(a) if c.image_id == image] == [(7, 0)]
    records.remove(b, image)
    assert records.nodes(image) == ["http://a:9292"]
    records.remove_all(a)
    assert records.on_node(a) == [] and records.nodes(other) == []
    records.hit(a, image)  # a hit on a record that is gone changes nothing
    assert records.on_node(a) == []
