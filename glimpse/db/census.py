"""Read-only counts for ``glimpse status``: images by status and the uploads in flight, each
one query (the status index answers both). Errors are the caller's to report: a report
retries nothing and logs nothing."""

from __future__ import annotations

import dataclasses
import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from glimpse.db.tables import images
from glimpse.domain.model import Status

IN_FLIGHT = (str(Status.SAVING), str(Status.IMPORTING))


@dataclasses.dataclass(frozen=True)
class Upload:
    """An upload or import in flight, and who runs it."""

    image_id: str
    name: str | None  # a client's text: escape it before it reaches a terminal
    status: str
    node: str | None
    incarnation: str | None
    updated_at: dt.datetime  # the heartbeat


def image_counts(engine: Engine) -> dict[str, int]:
    """How many images there are in each status (deleted ones included)."""
    stmt = sa.select(images.c.status, sa.func.count()).group_by(images.c.status)
    with engine.connect() as conn:
        return {str(status): int(count) for status, count in conn.execute(stmt)}


def uploads_in_flight(engine: Engine) -> list[Upload]:
    stmt = (sa.select(images.c.id, images.c.name, images.c.status, images.c.claim_node,
                      images.c.claim_incarnation, images.c.updated_at)
            .where(images.c.status.in_(IN_FLIGHT))
            .order_by(images.c.updated_at, images.c.id))
    with engine.connect() as conn:
        return [Upload(*row) for row in conn.execute(stmt)]
