"""SQLAlchemy implementation of the domain's ImageRepository."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from glimpse.db.tables import image_members, image_properties, images
from glimpse.domain.model import Image, ListQuery, Member, Scope, Status
from glimpse.errors import Conflict

_IMAGE_COLUMNS = [c.name for c in images.columns]
# Null values sort as empty strings / zero (spec §9.3), so keyset comparisons stay total.
_SORT_DEFAULTS: dict[str, Any] = {"name": "", "status": "", "container_format": "",
                                  "disk_format": "", "size": 0}


class SqlImageRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- images ---------------------------------------------------------------------------

    def create(self, image: Image) -> None:
        row = {name: getattr(image, name) for name in _IMAGE_COLUMNS}
        row["status"] = str(image.status)
        with self._engine.begin() as conn:
            exists = conn.execute(sa.select(images.c.id).where(images.c.id == image.id)).first()
            if exists:
                raise Conflict(f"An image with identifier {image.id} already exists")
            try:
                conn.execute(images.insert().values(**row))
            except sa.exc.IntegrityError as exc:
                raise Conflict(f"An image with identifier {image.id} already exists") from exc
            self._write_properties(conn, image.id, image.properties)

    def get(self, image_id: str) -> Image | None:
        # One query for the image and its properties: this is the hot path of HEAD and GET.
        stmt = (
            sa.select(images, image_properties.c.name.label("_prop_name"),
                      image_properties.c.value.label("_prop_value"))
            .select_from(images.outerjoin(image_properties))
            .where(images.c.id == image_id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return None
        props = {r._prop_name: r._prop_value for r in rows if r._prop_name is not None}
        return _image(rows[0], props)

    def update(
        self,
        image_id: str,
        fields: dict[str, Any],
        *,
        properties: dict[str, str | None] | None = None,
        expected_status: Status | None = None,
    ) -> Image | None:
        values = {k: (str(v) if isinstance(v, Status) else v) for k, v in fields.items()}
        with self._engine.begin() as conn:
            where = images.c.id == image_id
            if expected_status is not None:
                where = sa.and_(where, images.c.status == str(expected_status))
            if values:
                result = conn.execute(images.update().where(where).values(**values))
                if result.rowcount != 1:
                    return None
            elif conn.execute(sa.select(images.c.id).where(where)).first() is None:
                return None
            if properties is not None:
                conn.execute(
                    image_properties.delete().where(image_properties.c.image_id == image_id)
                )
                self._write_properties(conn, image_id, properties)
            row = conn.execute(sa.select(images).where(images.c.id == image_id)).one()
            return self._load(conn, [row])[0]

    def mark_deleted(
        self, image_id: str, status: Status, when: dt.datetime, expected_status: Status
    ) -> Image | None:
        with self._engine.begin() as conn:
            result = conn.execute(
                images.update()
                .where(images.c.id == image_id, images.c.status == str(expected_status))
                .values(status=str(status), deleted=True, deleted_at=when, updated_at=when)
            )
            if result.rowcount != 1:
                return None
            conn.execute(image_properties.delete().where(image_properties.c.image_id == image_id))
            conn.execute(image_members.delete().where(image_members.c.image_id == image_id))
            row = conn.execute(sa.select(images).where(images.c.id == image_id)).one()
            return self._load(conn, [row])[0]

    def list_images(self, query: ListQuery) -> list[Image]:
        stmt = sa.select(images).where(*self._conditions(query))
        keys = self._sort_columns(query.sort_key)
        descending = query.sort_dir == "desc"
        if query.marker is not None:
            stmt = stmt.where(self._after(keys, query.marker, descending))
        stmt = stmt.order_by(*(k.desc() if descending else k.asc() for k, _ in keys))
        stmt = stmt.limit(query.limit)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
            return self._load(conn, rows)

    def images_holding_data(self, statuses: list[str]) -> list[Image]:
        stmt = sa.select(images).where(
            images.c.status.in_(statuses), images.c.store.is_not(None)
        )
        with self._engine.connect() as conn:
            return self._load(conn, conn.execute(stmt).all())

    def find_stale_uploads(self, before: dt.datetime) -> list[Image]:
        stmt = sa.select(images).where(
            images.c.status == str(Status.SAVING), images.c.updated_at < before
        )
        with self._engine.connect() as conn:
            return self._load(conn, conn.execute(stmt).all())

    def usage(self, owner: str | None, exclude_id: str) -> int:
        stmt = sa.select(sa.func.coalesce(sa.func.sum(images.c.size), 0)).where(
            images.c.owner == owner if owner is not None else images.c.owner.is_(None),
            images.c.id != exclude_id,
            images.c.deleted.is_(False),
            images.c.status != str(Status.KILLED),
        )
        with self._engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())

    def leftovers(self, stores: Sequence[str], limit: int) -> list[Image]:
        stmt = (
            sa.select(images)
            .where(
                images.c.status.in_([str(Status.KILLED), str(Status.DELETED)]),
                images.c.location.is_not(None),
                images.c.store.in_(list(stores)),
            )
            .order_by(images.c.updated_at)
            .limit(limit)
        )
        with self._engine.connect() as conn:
            return self._load(conn, conn.execute(stmt).all())

    # -- members --------------------------------------------------------------------------

    def members(self, image_id: str) -> list[Member]:
        stmt = (
            sa.select(image_members)
            .where(image_members.c.image_id == image_id)
            .order_by(image_members.c.position, image_members.c.member)
        )
        with self._engine.connect() as conn:
            return [_member(r) for r in conn.execute(stmt)]

    def is_member(self, image_id: str, member_id: str) -> bool:
        stmt = sa.select(image_members.c.member).where(
            image_members.c.image_id == image_id, image_members.c.member == member_id
        )
        with self._engine.connect() as conn:
            return conn.execute(stmt).first() is not None

    def set_member(self, image_id: str, member_id: str, can_share: bool | None) -> None:
        with self._engine.begin() as conn:
            self._set_member(conn, image_id, member_id, can_share)

    def remove_member(self, image_id: str, member_id: str) -> bool:
        with self._engine.begin() as conn:
            result = conn.execute(
                image_members.delete().where(
                    image_members.c.image_id == image_id, image_members.c.member == member_id
                )
            )
            return result.rowcount == 1

    def replace_members(self, image_id: str, members: list[tuple[str, bool | None]]) -> None:
        wanted = [m for m, _ in members]
        with self._engine.begin() as conn:
            conn.execute(
                image_members.delete().where(
                    image_members.c.image_id == image_id, image_members.c.member.not_in(wanted)
                )
            )
            for member_id, can_share in members:
                self._set_member(conn, image_id, member_id, can_share)

    def shared_with(self, member_id: str) -> list[tuple[Member, str | None]]:
        stmt = (
            sa.select(image_members, images.c.owner)
            .join(images, images.c.id == image_members.c.image_id)
            .where(image_members.c.member == member_id, images.c.deleted.is_(False))
            .order_by(images.c.created_at, images.c.id)
        )
        with self._engine.connect() as conn:
            return [(_member(r), r.owner) for r in conn.execute(stmt)]

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _set_member(
        conn: Connection, image_id: str, member_id: str, can_share: bool | None
    ) -> None:
        where = sa.and_(image_members.c.image_id == image_id, image_members.c.member == member_id)
        if conn.execute(sa.select(image_members.c.member).where(where)).first() is not None:
            if can_share is not None:
                conn.execute(image_members.update().where(where).values(can_share=can_share))
            return
        position = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(image_members.c.position), 0)).where(
                image_members.c.image_id == image_id
            )
        ).scalar_one()
        conn.execute(
            image_members.insert().values(
                image_id=image_id, member=member_id, can_share=bool(can_share),
                position=position + 1,
            )
        )

    @staticmethod
    def _write_properties(
        conn: Connection, image_id: str, properties: dict[str, str | None]
    ) -> None:
        if properties:
            conn.execute(
                image_properties.insert(),
                [{"image_id": image_id, "name": k, "value": v} for k, v in properties.items()],
            )

    @staticmethod
    def _load(conn: Connection, rows: Sequence[Row[Any]]) -> list[Image]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        props: dict[str, dict[str, str | None]] = {i: {} for i in ids}
        for prow in conn.execute(
            sa.select(image_properties).where(image_properties.c.image_id.in_(ids))
        ):
            props[prow.image_id][prow.name] = prow.value
        return [_image(row, props[row.id]) for row in rows]

    @staticmethod
    def _conditions(query: ListQuery) -> list[sa.ColumnElement[bool]]:
        conds: list[sa.ColumnElement[bool]] = []
        if query.scope is Scope.VISIBLE:
            visible: list[sa.ColumnElement[bool]] = [images.c.is_public.is_(True)]
            if query.owner is not None:
                visible.append(images.c.owner == query.owner)
                visible.append(
                    sa.exists().where(
                        image_members.c.image_id == images.c.id,
                        image_members.c.member == query.owner,
                    )
                )
            conds.append(sa.or_(*visible))
        elif query.scope is Scope.NON_PUBLIC:
            conds.append(images.c.is_public.is_(False))
        if query.changes_since is not None:
            conds.append(images.c.updated_at > query.changes_since)
        else:
            conds.append(images.c.deleted.is_(False))
            conds.append(images.c.status != str(Status.KILLED))
        for name, value in query.filters.items():
            if name == "size_min":
                conds.append(images.c.size >= value)
            elif name == "size_max":
                conds.append(images.c.size <= value)
            else:
                conds.append(images.c[name] == value)
        for key, value in query.properties.items():
            conds.append(
                sa.exists().where(
                    image_properties.c.image_id == images.c.id,
                    image_properties.c.name == key,
                    image_properties.c.value == value,
                )
            )
        return conds

    @staticmethod
    def _sort_columns(sort_key: str) -> list[tuple[sa.ColumnElement[Any], str]]:
        """The total order of a list: the sort key, then created_at, then id."""
        names = [sort_key] + [k for k in ("created_at", "id") if k != sort_key]
        columns: list[tuple[sa.ColumnElement[Any], str]] = []
        for name in names:
            col: sa.ColumnElement[Any] = images.c[name]
            if name in _SORT_DEFAULTS:
                col = sa.func.coalesce(col, _SORT_DEFAULTS[name])
            columns.append((col, name))
        return columns

    @staticmethod
    def _after(
        keys: Iterable[tuple[sa.ColumnElement[Any], str]], marker: Image, descending: bool
    ) -> sa.ColumnElement[bool]:
        """Rows strictly after the marker in the order: a keyset condition, so a page costs the
        same at the end of the list as at its start."""
        keys = list(keys)
        values = [_sort_value(marker, name) for _, name in keys]
        alternatives = []
        for i, (col, _) in enumerate(keys):
            equal_prefix = [c == v for (c, _), v in zip(keys[:i], values[:i], strict=True)]
            step = col < values[i] if descending else col > values[i]
            alternatives.append(sa.and_(*equal_prefix, step))
        return sa.or_(*alternatives)


def _image(row: Row[Any], properties: dict[str, str | None]) -> Image:
    data = {name: row._mapping[name] for name in _IMAGE_COLUMNS}
    data["status"] = Status(data["status"])
    return Image(**data, properties=properties)


def _sort_value(image: Image, name: str) -> Any:
    value = getattr(image, name)
    return _SORT_DEFAULTS.get(name) if value is None else value


def _member(row: Row[Any]) -> Member:
    return Member(image_id=row.image_id, member_id=row.member, can_share=bool(row.can_share))
