"""The image cache's records in the database: which node holds which image, its hits and last
use (glimpse.cache.local.CacheRecords)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from glimpse.db import transactions
from glimpse.db.tables import image_cache
from glimpse.domain.caching import CachedImage
from glimpse.domain.model import now

T = TypeVar("T")


class SqlCacheRecords:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, node: str, url: str, image_id: str, size: int) -> None:
        """Record the node's entry, replacing an earlier record of it (a refill)."""
        when = now()

        def work(conn: Connection) -> None:
            where = (image_cache.c.node == node, image_cache.c.image_id == image_id)
            conn.execute(image_cache.delete().where(*where))
            conn.execute(image_cache.insert().values(
                node=node, image_id=image_id, node_url=url, size=size, hits=0,
                cached_at=when, last_accessed=when))

        self._run(work, write=True)

    def hit(self, node: str, image_id: str) -> None:
        self._run(lambda conn: conn.execute(
            image_cache.update()
            .where(image_cache.c.node == node, image_cache.c.image_id == image_id)
            .values(hits=image_cache.c.hits + 1, last_accessed=now())), write=True)

    def remove(self, node: str, image_id: str) -> None:
        self._run(lambda conn: conn.execute(image_cache.delete().where(
            image_cache.c.node == node, image_cache.c.image_id == image_id)), write=True)

    def remove_all(self, node: str) -> None:
        self._run(lambda conn: conn.execute(
            image_cache.delete().where(image_cache.c.node == node)), write=True)

    def on_node(self, node: str) -> list[CachedImage]:
        stmt = (sa.select(image_cache.c.image_id, image_cache.c.size, image_cache.c.hits,
                          image_cache.c.last_accessed, image_cache.c.cached_at)
                .where(image_cache.c.node == node).order_by(image_cache.c.image_id))
        return self._run(lambda conn: [
            CachedImage(r.image_id, r.size, r.hits, _utc(r.last_accessed), _utc(r.cached_at))
            for r in conn.execute(stmt)], write=False)

    def nodes(self, image_id: str) -> list[str]:
        stmt = (sa.select(image_cache.c.node_url).where(image_cache.c.image_id == image_id)
                .order_by(image_cache.c.node_url))
        return self._run(lambda conn: [r.node_url for r in conn.execute(stmt)], write=False)

    def _run(self, work: Callable[[Connection], T], write: bool) -> T:
        return transactions.run(self._engine, work, write=write)


def _utc(when: dt.datetime) -> dt.datetime:
    # SQLite and MariaDB give naive datetimes back; what was stored is UTC.
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)
