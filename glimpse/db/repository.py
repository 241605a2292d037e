"""SQLAlchemy implementation of the domain's ImageRepository.

Concurrency: every status change is a conditional update on the expected status, and every
change to an image's properties or members first takes the image's row lock (the UPDATE of its
row, or SELECT ... FOR UPDATE; SQLite serializes writers anyway), so concurrent changes to one
image apply one after the other, each on the state the previous one left. Transactions run
through ``transactions.run``: bounded retries, outages as Unavailable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar, cast

import sqlalchemy as sa

# The PostgreSQL and MySQL dialects are imported where they are used: each is 1-2 MiB of every
# server's memory, whatever its engine (see also tables.MYSQL_TABLE_OPTIONS).
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine, Row

from glimpse.db import transactions
from glimpse.db.fixed import Fixed
from glimpse.db.tables import (
    SORT_COPIES,
    SORT_NULLS,
    image_locations,
    image_members,
    image_properties,
    image_tags,
    images,
    quota_locks,
)
from glimpse.domain.model import (
    RELATED_FIELDS,
    Changes,
    Filter,
    Image,
    ListQuery,
    Location,
    LocationStatus,
    Member,
    MemberStatus,
    Op,
    Scope,
    SortKey,
    Status,
    Visibility,
    now,
)
from glimpse.domain.quotas import Usage
from glimpse.errors import Conflict, NotFound

T = TypeVar("T")

# The columns an Image holds (the generated sort copies are the database's own), selected in
# the order of Image's fields so that rows become Images positionally: a list page builds a
# thousand, and keyword construction from a mapping costs about twenty times as much.
# Image's fields end with those other tables hold (RELATED_FIELDS), appended after the columns.
_FIELDS = [f.name for f in dataclasses.fields(Image)]
_IMAGE_COLUMNS = [name for name in _FIELDS if name not in RELATED_FIELDS]
assert _FIELDS[len(_IMAGE_COLUMNS):] == list(RELATED_FIELDS), "related fields come last"
_SELECT_IMAGE = [images.c[name] for name in _IMAGE_COLUMNS]
_STATUS_AT = _FIELDS.index("status")
_VISIBILITY_AT = _FIELDS.index("visibility")
_FAILURE_AT = _FIELDS.index("failure_status")
_STATUSES = {str(s): s for s in Status}
_VISIBILITIES = {str(v): v for v in Visibility}
# Null values sort as empty strings / zero (spec §9.3), so keyset comparisons stay total.
_SORT_DEFAULTS: dict[str, Any] = SORT_NULLS
_TIE_BREAKERS = ("created_at", "id")
_COMPARISONS: dict[Op, Callable[[Any, Any], Any]] = {
    Op.EQ: operator.eq, Op.NEQ: operator.ne, Op.GT: operator.gt, Op.GTE: operator.ge,
    Op.LT: operator.lt, Op.LTE: operator.le,
}


class _SortColumn(NamedTuple):
    """One key of a list's total order: the column ordered by, the Image attribute the marker's
    value comes from, and the direction."""

    column: sa.ColumnElement[Any]
    attribute: str
    descending: bool


class SqlImageRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._fast_get: _SqliteImageRead | None = None
        # By with_locations: the related rows of a list page, through the driver.
        self._fast_related: dict[bool, _SqliteStatement] | None = None
        if engine.dialect.name == "sqlite":
            self._fast_get = _SqliteImageRead(engine)
            self._fast_related = {
                with_locations: _SqliteStatement(_page_related("sqlite", with_locations), engine)
                for with_locations in (False, True)}

    # -- images ---------------------------------------------------------------------------

    def create(self, image: Image, admit: Callable[[Usage], int | None] | None = None) -> None:
        row = {name: getattr(image, name) for name in _IMAGE_COLUMNS}
        row["status"] = str(image.status)
        row["visibility"] = str(image.visibility)
        if image.failure_status is not None:
            row["failure_status"] = str(image.failure_status)

        def work(conn: Connection) -> None:
            if admit is not None:
                _lock_project(conn, image.owner)
            _INSERT_IMAGE.run(conn, row)
            if admit is not None:
                reserved = admit(_usage(conn, image.owner, image.id))
                if reserved is not None:
                    _set_fields(conn, image.id, {"upload_reserved": reserved}, None)
            self._write_properties(conn, image.id, image.properties)
            _add_tags(conn, image.id, image.tags)
            _add_locations(conn, image.id, image.locations, start=0)

        try:
            self._write(work)
        except sa.exc.IntegrityError as exc:
            # The id is the primary key: the insert itself finds an existing image (or one a
            # concurrent create just wrote), with no read before it.
            raise Conflict(f"An image with identifier {image.id} already exists") from exc

    def get(self, image_id: str) -> Image | None:
        if self._fast_get is not None:
            try:
                return self._fast_get(image_id)
            except sqlite3.Error:
                pass  # the way below retries what is transient and reports the rest
        return transactions.run(
            self._engine, lambda conn: _one_image(conn, image_id), write=False, single_read=True
        )

    def update(
        self,
        image_id: str,
        changes: Changes,
        *,
        expected_status: Status | None = None,
        check_counts: Callable[[int, int], None] | None = None,
        add_locations: Sequence[Location] = (),
        admit: Callable[[Usage], int | None] | None = None,
    ) -> Image | None:
        def work(conn: Connection) -> Image | None:
            owner: str | None = None
            if admit is not None:
                # The project's lock first, the image's after: the order creates take too.
                found = conn.execute(sa.select(images.c.owner).where(images.c.id == image_id)
                                     ).first()
                if found is None:
                    return None
                owner = found[0]
                _lock_project(conn, owner)
            # Either statement takes the image's row lock: property and tag changes below
            # apply to what the previous writer left, never to a stale read.
            if changes.fields:
                if not _set_fields(conn, image_id, changes.fields, expected_status):
                    return None
            elif conn.execute(
                sa.select(images.c.id).where(_image_where(image_id, expected_status))
                .with_for_update()
            ).first() is None:
                return None
            if changes.properties_before is not None and not _properties_are(
                    conn, image_id, changes.properties_before):
                # Rolled back with the row's changes above: nothing of this update lands.
                raise _Unchanged
            if changes.touches_related:
                self._change_properties(conn, image_id, changes)
                _change_tags(conn, image_id, changes)
                if check_counts is not None:
                    check_counts(self._property_count(conn, image_id),
                                 _tag_count(conn, image_id))
            if changes.locations is not None:
                _replace_locations(conn, image_id, changes.locations, changes.locations_before)
            _add_locations(conn, image_id, add_locations)
            if admit is not None:
                reserved = admit(_usage(conn, owner, image_id))
                _set_fields(conn, image_id, {"upload_reserved": reserved}, None)
            return self._reload(conn, image_id)

        try:
            return self._write(work)
        except _Unchanged:
            return None

    def quota_usage(self, owner: str | None) -> Usage:
        return self._read(lambda conn: _usage(conn, owner, None))

    def remove_location(self, image_id: str, store: str, url: str) -> None:
        self._write(lambda conn: conn.execute(image_locations.delete().where(
            image_locations.c.image_id == image_id, image_locations.c.store == store,
            image_locations.c.url == url)))

    def set_fields(
        self, image_id: str, fields: dict[str, Any], *, expected_status: Status | None = None,
        expected_incarnation: str | None = None,
    ) -> bool:
        return self._write(lambda conn: _set_fields(conn, image_id, fields, expected_status,
                                                    expected_incarnation))

    def mark_deleted(
        self, image_id: str, status: Status, when: dt.datetime, expected_status: Status
    ) -> Image | None:
        def work(conn: Connection) -> Image | None:
            result = conn.execute(
                images.update()
                .where(images.c.id == image_id, images.c.status == str(expected_status))
                .values(status=str(status), deleted=True, deleted_at=when, updated_at=when)
            )
            if result.rowcount != 1:
                return None
            for related in (image_properties, image_members, image_tags):
                conn.execute(related.delete().where(related.c.image_id == image_id))
            return self._reload(conn, image_id)

        return self._write(work)

    def list_images(self, query: ListQuery) -> list[Image]:
        keys = self._sort_columns(query.sort)
        after = ([] if query.marker is None else
                 [self._after(keys, query.marker, self._engine.dialect.name)])
        branches = (self._visible_branches(query) if query.scope is Scope.VISIBLE
                    else [(images, [])])
        extra = [key.column for key in keys if key.column.name not in _IMAGE_COLUMNS]

        def page(source: sa.FromClause, where: list[sa.ColumnElement[bool]]) -> sa.Select[Any]:
            conds = self._conditions(query, bound_by_deleted=source is images)
            return (sa.select(*_SELECT_IMAGE, *extra).select_from(source)
                    .where(*where, *conds, *after)
                    .order_by(*_directed(keys)).limit(query.limit))

        if len(branches) == 1:
            stmt = page(*branches[0])
        else:
            # Visible images are public, owned or shared (or others' community images): an OR
            # of these is a filter over the sort index, which reads every row in that order
            # until a page is found (all of them for a tenant whose images are old, when few
            # are public). Each branch on its own is an index range (visibility, owner, member)
            # bounded by the page size; the branches are disjoint, so their union needs no
            # duplicate removal, only a merge of at most four pages.
            parts = [page(source, where).subquery() for source, where in branches]
            union = sa.union_all(*(sa.select(*part.c) for part in parts)).subquery()
            stmt = (sa.select(*(union.c[name] for name in _IMAGE_COLUMNS))
                    .order_by(*_directed(
                        key._replace(column=union.c[key.column.name]) for key in keys))
                    .limit(query.limit))
        return self._read(lambda conn: self._load(conn, conn.execute(stmt).all(),
                                                  with_locations=query.with_locations))

    def images_holding_data(self, statuses: list[str] | None = None) -> list[Image]:
        stmt = sa.select(*_SELECT_IMAGE).where(_has_location())
        if statuses is not None:
            stmt = stmt.where(images.c.status.in_(statuses))
        return self._read(lambda conn: self._load(conn, conn.execute(stmt).all()))

    def find_stale_uploads(self, before: dt.datetime) -> list[Image]:
        stmt = sa.select(*_SELECT_IMAGE).where(
            images.c.status.in_([str(Status.SAVING), str(Status.IMPORTING)]),
            images.c.updated_at < before
        )
        return self._read(lambda conn: self._load(conn, conn.execute(stmt).all()))

    def find_node_uploads(self, node: str) -> list[Image]:
        # Few rows are saving at once: the status index finds them, the node filters them.
        stmt = sa.select(*_SELECT_IMAGE).where(
            images.c.status.in_([str(Status.SAVING), str(Status.IMPORTING)]),
            images.c.claim_node == node,
        )
        return self._read(lambda conn: self._load(conn, conn.execute(stmt).all()))

    def usage(self, owner: str | None, exclude_id: str) -> int:
        stmt = sa.select(sa.func.coalesce(sa.func.sum(images.c.size), 0)).where(
            images.c.owner == owner if owner is not None else images.c.owner.is_(None),
            images.c.id != exclude_id,
            images.c.deleted.is_(False),
            images.c.status != str(Status.KILLED),
        )
        return self._read(lambda conn: int(conn.execute(stmt).scalar_one()))

    def leftovers(self, stores: Sequence[str], limit: int) -> list[Image]:
        stmt = (
            sa.select(*_SELECT_IMAGE)
            .where(sa.or_(
                sa.and_(images.c.status.in_([str(Status.KILLED), str(Status.DELETED)]),
                        _has_location(image_locations.c.store.in_(list(stores)))),
                # A copy being deleted from one store (DELETE /v2/stores/...) whose store
                # failed: the image lives on in its other stores.
                _has_location(image_locations.c.store.in_(list(stores)),
                              image_locations.c.status == str(LocationStatus.PENDING_DELETE)),
            ))
            .order_by(images.c.updated_at)
            .limit(limit)
        )
        return self._read(lambda conn: self._load(conn, conn.execute(stmt).all()))

    # -- members --------------------------------------------------------------------------

    def members(self, image_id: str) -> list[Member]:
        return self._read(lambda conn: self._members(conn, image_id))

    def is_member(self, image_id: str, member_id: str) -> bool:
        stmt = sa.select(image_members.c.member).where(
            image_members.c.image_id == image_id, image_members.c.member == member_id
        )
        return self._read(lambda conn: conn.execute(stmt).first() is not None)

    def set_member(
        self,
        image_id: str,
        member_id: str,
        can_share: bool | None,
        check_member_count: Callable[[int], None] | None = None,
        status: MemberStatus | None = None,
    ) -> None:
        def work(conn: Connection) -> None:
            self._lock_live_image(conn, image_id)
            self._set_member(conn, image_id, member_id, can_share, status)
            if check_member_count is not None:
                check_member_count(len(self._members(conn, image_id)))

        self._write(work)

    def add_member(
        self,
        image_id: str,
        member_id: str,
        status: MemberStatus,
        check_member_count: Callable[[int], None] | None = None,
    ) -> Member:
        def work(conn: Connection) -> Member:
            # Under the image's lock, so that of two concurrent adds of one member one finds
            # the other's row (Conflict) rather than a duplicate key.
            self._lock_live_image(conn, image_id)
            if self._one_member(conn, image_id, member_id) is not None:
                raise Conflict(f"Member {member_id} already has a membership of image "
                               f"{image_id}.")
            self._set_member(conn, image_id, member_id, None, status)
            if check_member_count is not None:
                check_member_count(len(self._members(conn, image_id)))
            added = self._one_member(conn, image_id, member_id)
            assert added is not None, "inserted in this transaction"
            return added

        return self._write(work)

    def set_member_status(
        self, image_id: str, member_id: str, status: MemberStatus
    ) -> Member | None:
        def work(conn: Connection) -> Member | None:
            self._lock_live_image(conn, image_id)
            result = conn.execute(
                image_members.update()
                .where(image_members.c.image_id == image_id, image_members.c.member == member_id)
                .values(status=str(status), updated_at=now())
            )
            if result.rowcount != 1:
                return None
            return self._one_member(conn, image_id, member_id)

        return self._write(work)

    def remove_member(self, image_id: str, member_id: str) -> bool:
        def work(conn: Connection) -> bool:
            self._lock_live_image(conn, image_id)
            result = conn.execute(
                image_members.delete().where(
                    image_members.c.image_id == image_id, image_members.c.member == member_id
                )
            )
            return bool(result.rowcount == 1)

        return self._write(work)

    def replace_members(
        self, image_id: str, members: list[tuple[str, bool | None]], status: MemberStatus
    ) -> None:
        wanted = [m for m, _ in members]

        def work(conn: Connection) -> None:
            self._lock_live_image(conn, image_id)
            conn.execute(
                image_members.delete().where(
                    image_members.c.image_id == image_id, image_members.c.member.not_in(wanted)
                )
            )
            existing = {m.member_id for m in self._members(conn, image_id)}
            for member_id, can_share in members:
                self._set_member(conn, image_id, member_id, can_share,
                                 None if member_id in existing else status)

        self._write(work)

    def shared_with(self, member_id: str) -> list[tuple[Member, str | None]]:
        stmt = (
            sa.select(image_members, images.c.owner)
            .join(images, images.c.id == image_members.c.image_id)
            .where(image_members.c.member == member_id, images.c.deleted.is_(False),
                   images.c.visibility != str(Visibility.PRIVATE))
            .order_by(images.c.created_at, images.c.id)
        )
        return self._read(lambda conn: [(_member(r), r.owner) for r in conn.execute(stmt)])

    # -- helpers --------------------------------------------------------------------------

    def _read(self, work: Callable[[Connection], T]) -> T:
        return transactions.run(self._engine, work, write=False)

    def _write(self, work: Callable[[Connection], T]) -> T:
        return transactions.run(self._engine, work, write=True)

    def _reload(self, conn: Connection, image_id: str) -> Image:
        if self._fast_get is not None:
            # Read in the transaction, on its own driver connection.
            image = self._fast_get.read(conn.connection.dbapi_connection, image_id)
        else:
            image = _one_image(conn, image_id)
        assert image is not None, "reloaded inside the transaction that holds its row"
        return image

    @staticmethod
    def _lock_live_image(conn: Connection, image_id: str) -> None:
        """Take the image's row lock, so membership changes of one image apply one after the
        other and none lands on an image deleted meanwhile."""
        stmt = (
            sa.select(images.c.id)
            .where(images.c.id == image_id, images.c.deleted.is_(False))
            .with_for_update()
        )
        if conn.execute(stmt).first() is None:
            raise NotFound(f"Image {image_id} not found.")

    @staticmethod
    def _members(conn: Connection, image_id: str) -> list[Member]:
        stmt = (
            sa.select(image_members)
            .where(image_members.c.image_id == image_id)
            .order_by(image_members.c.position, image_members.c.member)
        )
        return [_member(r) for r in conn.execute(stmt)]

    @staticmethod
    def _one_member(conn: Connection, image_id: str, member_id: str) -> Member | None:
        row = conn.execute(sa.select(image_members).where(
            image_members.c.image_id == image_id, image_members.c.member == member_id)).first()
        return None if row is None else _member(row)

    @staticmethod
    def _set_member(
        conn: Connection, image_id: str, member_id: str, can_share: bool | None,
        status: MemberStatus | None,
    ) -> None:
        """Create the membership (``status`` defaulting to accepted, can_share to false), or
        change what is given of an existing one."""
        where = sa.and_(image_members.c.image_id == image_id, image_members.c.member == member_id)
        stamp = now()
        if conn.execute(sa.select(image_members.c.member).where(where)).first() is not None:
            values: dict[str, Any] = {}
            if can_share is not None:
                values["can_share"] = can_share
            if status is not None:
                values["status"] = str(status)
            if values:
                conn.execute(image_members.update().where(where).values(**values,
                                                                        updated_at=stamp))
            return
        position = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(image_members.c.position), 0)).where(
                image_members.c.image_id == image_id
            )
        ).scalar_one()
        conn.execute(
            image_members.insert().values(
                image_id=image_id, member=member_id, can_share=bool(can_share),
                position=position + 1, status=str(status or MemberStatus.ACCEPTED),
                created_at=stamp, updated_at=stamp,
            )
        )

    @classmethod
    def _change_properties(cls, conn: Connection, image_id: str, changes: Changes) -> None:
        """Set and remove properties (replacing same-named ones); with ``keep_properties``,
        drop all others but those set and those in ``keep_namespace``."""
        of_image = image_properties.c.image_id == image_id
        properties = changes.set_properties
        if changes.keep_properties is not None:
            keep = set(changes.keep_properties) | set(properties)
            spared = [] if not changes.keep_namespace else [
                sa.not_(image_properties.c.name.startswith(changes.keep_namespace,
                                                           autoescape=True))]
            conn.execute(image_properties.delete().where(
                of_image, image_properties.c.name.not_in(list(keep)), *spared))
        gone = set(properties) | changes.remove_properties
        if gone:
            conn.execute(image_properties.delete().where(
                of_image, image_properties.c.name.in_(list(gone))))
        cls._write_properties(conn, image_id, properties)

    @staticmethod
    def _property_count(conn: Connection, image_id: str) -> int:
        return int(conn.execute(
            sa.select(sa.func.count()).where(image_properties.c.image_id == image_id)
        ).scalar_one())

    @staticmethod
    def _write_properties(
        conn: Connection, image_id: str, properties: dict[str, str | None]
    ) -> None:
        if properties:
            _INSERT_PROPERTY.run(
                conn,
                [{"image_id": image_id, "name": k, "value": v} for k, v in properties.items()],
            )

    def _load(
        self, conn: Connection, rows: Sequence[Row[Any]], with_locations: bool = True
    ) -> list[Image]:
        """Images from their rows, with their properties and tags, and their locations unless
        told not to (no API lists locations; a page then costs an index probe per image
        less)."""
        if not rows:
            return []
        ids = [r[0] for r in rows]
        related = _Related(ids)
        related.add(self._related(conn, ids, with_locations))
        return [_image(row, *related.of(row[0])) for row in rows]

    def _related(self, conn: Connection, ids: list[str],
                 with_locations: bool) -> Sequence[Sequence[Any]]:
        """The related rows of the images ``ids``, read in ``conn``'s transaction."""
        if self._fast_related is not None:
            try:
                # Through the driver, on the transaction's own connection.
                return self._fast_related[with_locations].rows(
                    conn.connection.dbapi_connection, json.dumps(ids))
            except sqlite3.Error:
                pass  # the way below reports what fails (transactions.run retries it)
        dialect = conn.dialect.name
        return conn.execute(_page_related(dialect, with_locations),
                            {_IDS_PARAM: _ids_value(dialect, ids)}).all()

    @staticmethod
    def _visible_branches(
        query: ListQuery,
    ) -> list[tuple[sa.FromClause, list[sa.ColumnElement[bool]]]]:
        """Scope.VISIBLE as disjoint parts: public; else owned; else shared with the owner (a
        join on image_members, whose key makes it one row per image); else, when asked for,
        community images of other owners. The index bounds are equalities, never ``IS``, which
        not every engine bounds a range with; "else" is an inequality, which none does, so
        that SQLite without statistics (glimpse never runs ANALYZE) does not take the
        visibility index for a range of nine images in ten."""
        owner = query.owner
        public: tuple[sa.FromClause, list[sa.ColumnElement[bool]]] = (
            images, [images.c.visibility == str(Visibility.PUBLIC)])
        is_community = images.c.visibility == str(Visibility.COMMUNITY)
        if owner is None:
            return [public, (images, [is_community])] if query.others_community else [public]
        community: list[tuple[sa.FromClause, list[sa.ColumnElement[bool]]]] = [
            (images, [is_community, images.c.owner.is_distinct_from(owner)])
        ] if query.others_community else []
        not_public = images.c.visibility != str(Visibility.PUBLIC)
        # Memberships count only while the image is shared, and lists show those in the
        # query's member status (v1: accepted ones).
        membership = [image_members.c.image_id == images.c.id, image_members.c.member == owner]
        if query.member_status is not None:
            membership.append(image_members.c.status == str(query.member_status))
        shared = images.join(image_members, sa.and_(*membership))
        return [
            public,
            (images, [not_public, images.c.owner == owner]),
            (shared, [images.c.visibility == str(Visibility.SHARED),
                      images.c.owner.is_distinct_from(owner)]),
            *community,
        ]

    @staticmethod
    def _conditions(
        query: ListQuery, bound_by_deleted: bool = True
    ) -> list[sa.ColumnElement[bool]]:
        """The list's conditions but for Scope.VISIBLE (see _visible_branches).

        ``deleted = false`` bounds the range of every list index (they lead with it); a part
        of a list that must be driven from another table (the images shared with a tenant,
        from image_members) says ``deleted != true`` instead, the same for that NOT NULL column
        but no index bound: SQLite without statistics would otherwise take it for a selective
        one and read every live image in order, probing image_members for each."""
        conds: list[sa.ColumnElement[bool]] = []
        if query.scope is Scope.NON_PUBLIC:
            conds.append(images.c.visibility != str(Visibility.PUBLIC))
        if query.scope is not Scope.VISIBLE and query.others_community is False:
            # Community images only of the caller's own (VISIBLE's branches say this).
            not_community = images.c.visibility != str(Visibility.COMMUNITY)
            conds.append(not_community if query.owner is None else
                         sa.or_(not_community, images.c.owner == query.owner))
        if query.changes_since is not None:
            conds.append(images.c.updated_at > query.changes_since)
        else:
            conds.append(images.c.deleted == sa.false() if bound_by_deleted
                         else images.c.deleted != sa.true())
            conds.append(images.c.status != str(Status.KILLED))
        conds.extend(_condition(_filter_column(f), f.op, f.value) for f in query.filters)
        for key, value in query.properties.items():
            conds.append(
                sa.exists().where(
                    image_properties.c.image_id == images.c.id,
                    image_properties.c.name == key,
                    image_properties.c.value == value,
                )
            )
        for tag in dict.fromkeys(query.tags):
            # A probe of image_tags' primary key (image_id, value) per image read.
            conds.append(sa.exists().where(image_tags.c.image_id == images.c.id,
                                           image_tags.c.value == tag))
        return conds

    @staticmethod
    def _sort_columns(sort: Sequence[SortKey]) -> list[_SortColumn]:
        """The total order of a list: the sort keys, then created_at and id where missing.

        The tie-breakers run in the sort's direction when all its keys share one, and descending
        when they are mixed: the Images API v2 rule (glance ``_image_get_all``), which glance
        words as "the single given direction, desc when several were given". Glance counts
        directions as written, so ``sort=name:asc,size:asc`` breaks ties descending there; a v2
        parser that wants that also for repeated equal directions appends
        ``SortKey("created_at"), SortKey("id")`` itself. This rule keeps every one-direction
        sort one direction throughout, which is what lets a page be an index range.

        A key given twice counts once, where it first appears, and nothing after ``id`` (unique)
        can change the order: both are dropped, so ``id`` first is a one-key order too."""
        given: list[SortKey] = []
        for key in sort:
            if all(key.field != seen.field for seen in given):
                given.append(key)
            if key.field == "id":
                break
        directions = {key.descending for key in given}
        tie_descending = directions.pop() if len(directions) == 1 else True
        fields = [key.field for key in given]
        if "id" not in fields:
            given += [SortKey(name, tie_descending) for name in _TIE_BREAKERS
                      if name not in fields]
        return [_SortColumn(images.c[SORT_COPIES.get(key.field, key.field)], key.field,
                            key.descending) for key in given]

    @staticmethod
    def _after(keys: Sequence[_SortColumn], marker: Image, dialect: str) -> sa.ColumnElement[bool]:
        """Rows strictly after the marker in the order, said so that it bounds a range of the
        sort key's index: a page then costs the same at the end of the list as at its start.

        When every key runs in one direction a row-value comparison says it, and PostgreSQL and
        SQLite take that as an index bound. MariaDB does not (it reads the index from the
        start, filtering), but its range optimizer turns the equivalent OR of prefixes
        ``k1 < v1 OR (k1 = v1 AND k2 < v2) OR ...`` into ranges of that index.

        Mixed directions have no row value, and no index holds their order (each runs one
        way), so the engine sorts what it reads: the OR of prefixes, each key compared its own
        way, is then ANDed with the bound it implies on the first key, so that what is read is
        the rest of the list from the marker's first key on, a range of that key's index."""
        pairs = [(key.column, sa.literal(_sort_value(marker, key.attribute), key.column.type),
                  key.descending) for key in keys]
        one_way = len({descending for *_, descending in pairs}) == 1
        if one_way and dialect not in ("mysql", "mariadb"):
            row = sa.tuple_(*(col for col, _, _ in pairs))
            values = sa.tuple_(*(value for _, value, _ in pairs))
            return row < values if pairs[0][2] else row > values
        prefixes = []
        for n, (col, value, descending) in enumerate(pairs):
            beyond = col < value if descending else col > value
            prefixes.append(sa.and_(*(c == v for c, v, _ in pairs[:n]), beyond))
        if one_way:
            return sa.or_(*prefixes)
        first, value, descending = pairs[0]
        return sa.and_(first <= value if descending else first >= value, sa.or_(*prefixes))


# What other tables hold of images, as rows of one shape: (kind, image id, then values), a
# branch per table, each bounded by its table's image_id index (``of``). A property is
# (name, value), a tag (value), a location (store, url, meta, status, position). Without
# locations the rows are four wide, not seven: every value fetched costs (Python 3.11's sqlite3
# releases and retakes the GIL for each), and a list page fetches one per property.
_KINDS = ("p", "t", "l")
_RELATED_WIDTH = 7


def _related_rows(
    of: Callable[[sa.Column[str]], sa.ColumnElement[bool]], with_locations: bool = True,
) -> list[sa.Select[Any]]:
    """Properties, tags and (unless told not to) locations."""
    props, tags, locs = image_properties.c, image_tags.c, image_locations.c
    # (PostgreSQL types a column of a UNION by its branches in turn: a NULL there would be
    # text, which a location's integer position then does not match.)
    padding = [sa.null(), sa.null(), sa.literal_column("0")] if with_locations else []
    branches = [
        sa.select(sa.literal_column("'p'"), props.image_id, props.name, props.value,
                  *padding).where(of(props.image_id)),
        sa.select(sa.literal_column("'t'"), tags.image_id, tags.value, sa.null(),
                  *padding).where(of(tags.image_id)),
    ]
    if with_locations:
        branches.append(
            sa.select(sa.literal_column("'l'"), locs.image_id, locs.store, locs.url, locs.meta,
                      locs.status, locs.position).where(of(locs.image_id)))
    return branches


# The page's ids, the one parameter of _page_related's statements.
_IDS_PARAM = "_image_ids"


@functools.cache
def _page_related(dialect: str, with_locations: bool) -> sa.CompoundSelect[Any]:
    """The related rows (``_related_rows``) of a page of images, built once per dialect: the
    page's ids are one bound parameter (``_ids_value``), so SQLAlchemy finds the compiled form
    by a key memoized on the statement instead of building and keying a statement per page."""
    return sa.union_all(*_related_rows(_one_of(dialect), with_locations))


def _one_of(dialect: str) -> Callable[[sa.Column[str]], sa.ColumnElement[bool]]:
    """``column`` is one of a page's ids: an IN list where nothing better exists. A
    thousand-item IN list costs more to render and parse than the index lookups it asks for,
    so PostgreSQL gets one array parameter and SQLite one JSON text (json_each)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        page = sa.bindparam(_IDS_PARAM, type_=postgresql.ARRAY(sa.String))
        return lambda column: column == sa.any_(page)
    if dialect == "sqlite":
        listed: sa.Select[Any] = sa.select(sa.column("value")).select_from(
            sa.func.json_each(sa.bindparam(_IDS_PARAM, type_=sa.String)))
        return lambda column: column.in_(listed)
    return lambda column: column.in_(sa.bindparam(_IDS_PARAM, expanding=True))


def _ids_value(dialect: str, ids: list[str]) -> Any:
    """The value of _IDS_PARAM (see ``_one_of``)."""
    return json.dumps(ids) if dialect == "sqlite" else ids


# One image with everything other tables hold of it, in one statement: the hot path of HEAD,
# GET and every write's reply. The image row leads (kind 'i'), its related rows follow, padded
# to the image's width. Built once: SQLAlchemy memoizes a statement's cache key on the object,
# so a constant with a bound parameter skips both building the statement and keying its
# compiled form (a third of a HEAD request's CPU when built per call).
_ONE_IMAGE = sa.union_all(
    sa.select(sa.literal_column("'i'"), images.c.id, *([sa.null()] * (_RELATED_WIDTH - 3)),
              sa.literal_column("0"), *_SELECT_IMAGE)
    .where(images.c.id == sa.bindparam("image_id")),
    *(branch.add_columns(*([sa.null()] * len(_SELECT_IMAGE)))
      for branch in _related_rows(lambda column: column == sa.bindparam("image_id"))),
)


class _SqliteStatement:
    """A statement built once, whose parameters all take one value, on SQLite straight through
    the driver: the SQL compiled once, no SQLAlchemy connection, execution context or result
    objects (about 100 of the 130 us of a single image's read, measured in process; for a
    1,000-image list page's related rows, 4.5% of the page's instructions). Results come as the
    driver gives them: the caller converts what needs converting."""

    def __init__(self, stmt: sa.CompoundSelect[Any], engine: Engine) -> None:
        compiled = stmt.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._binds = len(compiled.positiontup or ())

    def rows(self, connection: Any, value: Any) -> list[Any]:
        """The rows through ``connection`` (a driver connection, perhaps in a transaction)."""
        cursor = connection.cursor()
        try:
            cursor.execute(self.sql, [value] * self._binds)
            return list(cursor.fetchall())
        finally:
            cursor.close()


class _SqliteImageRead:
    """``_ONE_IMAGE`` on SQLite through the driver (_SqliteStatement), with the column types'
    own result conversions: a quarter of a metadata GET's CPU saved. A single statement needs
    no transaction on SQLite (the connections run in autocommit mode, see engine.py): it reads
    one snapshot.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._statement = _SqliteStatement(_ONE_IMAGE, engine)
        dialect = engine.dialect
        converters = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                      for column in _SELECT_IMAGE]
        self._converted = [(_RELATED_WIDTH + n, convert)
                           for n, convert in enumerate(converters) if convert is not None]

    def __call__(self, image_id: str) -> Image | None:
        connection = self._engine.raw_connection()
        try:
            return self.read(connection.dbapi_connection, image_id)
        finally:
            connection.close()  # back to the pool

    def read(self, connection: Any, image_id: str) -> Image | None:
        """The image through ``connection`` (a driver connection, perhaps in a transaction)."""
        rows = self._statement.rows(connection, image_id)
        for n, row in enumerate(rows):
            if row[0] == "i":
                values = list(row)
                for at, convert in self._converted:
                    values[at] = convert(values[at])
                rows[n] = values
        return _image_of_rows(image_id, rows)


class _Related:
    """The properties, tags and locations of some images, gathered from related rows."""

    __slots__ = ("located", "properties", "tags")

    def __init__(self, ids: Iterable[str]) -> None:
        self.properties: dict[str, dict[str, str | None]] = {i: {} for i in ids}
        self.tags: dict[str, list[str]] = {}
        self.located: dict[str, list[tuple[int, Location]]] = {}

    def add(self, rows: Iterable[Sequence[Any]]) -> None:
        properties, tags, located = self.properties, self.tags, self.located
        for row in rows:
            kind, image_id = row[0], row[1]
            if kind == "p":  # by far the most rows
                properties[image_id][row[2]] = row[3]
            elif kind == "t":
                tags.setdefault(image_id, []).append(row[2])
            else:
                located.setdefault(image_id, []).append(
                    (row[6], _location(row[2], row[3], row[4], row[5])))

    def of(self, image_id: str) -> tuple[dict[str, str | None], list[str], list[Location]]:
        tags = self.tags.get(image_id)
        located = self.located.get(image_id)
        return (self.properties[image_id], sorted(tags) if tags else [],
                [loc for _, loc in sorted(located, key=lambda p: p[0])] if located else [])


def _image_where(image_id: str, expected_status: Status | None) -> sa.ColumnElement[bool]:
    where = images.c.id == image_id
    if expected_status is None:
        return where
    return sa.and_(where, images.c.status == str(expected_status))


def _set_fields(
    conn: Connection, image_id: str, fields: dict[str, Any], expected_status: Status | None,
    expected_incarnation: str | None = None,
) -> bool:
    values = {_SET_PARAM + k: (str(v) if isinstance(v, Status | Visibility) else v)
              for k, v in fields.items()}
    values[_ID_PARAM] = image_id
    if expected_status is not None:
        values[_EXPECTED_PARAM] = str(expected_status)
    if expected_incarnation is not None:
        values[_INCARNATION_PARAM] = expected_incarnation
    stmt = _field_update(frozenset(fields), expected_status is not None,
                         expected_incarnation is not None)
    return stmt.rowcount(conn, values) == 1


class _Unchanged(Exception):
    """An update's condition on the stored properties failed: its transaction rolls back."""


def _properties_are(conn: Connection, image_id: str, expected: dict[str, str | None]) -> bool:
    """Whether the image's properties named in ``expected`` have those values (None: absent).
    Read after the image's row lock is taken, and every property writer takes it first, so
    the answer holds until the transaction ends (READ COMMITTED sees the last writer's)."""
    if not expected:
        return True
    rows = conn.execute(sa.select(image_properties.c.name, image_properties.c.value).where(
        image_properties.c.image_id == image_id,
        image_properties.c.name.in_(list(expected)))).all()
    stored: dict[str, str | None] = {name: None for name in expected}
    stored.update({row[0]: row[1] for row in rows})
    return stored == expected


# Writes that every upload makes, built once with bound parameters rather than per call
# with the values inlined: SQLAlchemy then finds their compiled form by a key memoized on the
# statement, instead of building the statement, coercing every value and keying it anew
# (measured on SQLite: two thirds of the CPU of an upload's claim and finishing writes).
_ID_PARAM = "_image_id"
_SET_PARAM = "_set_"  # + a column's name: its new value (a column's own name is reserved)
_EXPECTED_PARAM = "_expected_status"
_INCARNATION_PARAM = "_expected_incarnation"
# On SQLite they run through the driver (fixed.py).
_INSERT_IMAGE = Fixed(images.insert())
_INSERT_PROPERTY = Fixed(image_properties.insert())
_INSERT_TAG = Fixed(image_tags.insert())
_INSERT_LOCATION = Fixed(image_locations.insert())
_NEXT_LOCATION = Fixed(
    sa.select(sa.func.coalesce(sa.func.max(image_locations.c.position), -1) + 1)
    .where(image_locations.c.image_id == sa.bindparam(_ID_PARAM)))


@functools.lru_cache(maxsize=256)
def _field_update(names: frozenset[str], conditional: bool,
                  by_incarnation: bool = False) -> Fixed:
    """UPDATE images SET <names> WHERE id = :_image_id [AND status = :_expected_status]
    [AND claim_incarnation = :_expected_incarnation]."""
    where = images.c.id == sa.bindparam(_ID_PARAM)
    if conditional:
        where = sa.and_(where, images.c.status == sa.bindparam(_EXPECTED_PARAM))
    if by_incarnation:
        where = sa.and_(where, images.c.claim_incarnation == sa.bindparam(_INCARNATION_PARAM))
    return Fixed(images.update().where(where).values(
        {name: sa.bindparam(_SET_PARAM + name) for name in names}))


_NOT_LIVE = [str(Status.KILLED), str(Status.DELETED), str(Status.PENDING_DELETE)]
_RECEIVING = [str(Status.SAVING), str(Status.UPLOADING), str(Status.IMPORTING)]


def _lock_project(conn: Connection, project: str | None) -> None:
    """Take the project's quota lock (its row in quota_locks, made on first use) until the
    transaction ends. SQLite needs none (its writers take turns) but runs the same."""
    key = project or ""
    locked = sa.select(quota_locks.c.project).where(quota_locks.c.project == key)
    if conn.execute(locked.with_for_update()).first() is not None:
        return
    # The first claim of a project: an upsert that writes the row, so that it is locked (an
    # INSERT IGNORE would take MariaDB's shared lock, and two of them then deadlock).
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg_insert = postgresql.insert(quota_locks).values(project=key)
        conn.execute(pg_insert.on_conflict_do_update(
            index_elements=[quota_locks.c.project], set_={"project": pg_insert.excluded.project}))
    elif dialect == "sqlite":
        conn.execute(sqlite.insert(quota_locks).values(project=key).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects import mysql

        my_insert = mysql.insert(quota_locks).values(project=key)
        conn.execute(my_insert.on_duplicate_key_update(project=my_insert.inserted.project))


def _usage(conn: Connection, owner: str | None, image_id: str | None) -> Usage:
    """The owner's usage (domain/quotas.py): its live images; ``image_id``'s size left out.
    An upload in flight counts the bytes it reserved; a declared size counts as held."""
    c = images.c
    reserved = sa.case((sa.and_(c.status == str(Status.SAVING), c.upload_reserved.is_not(None)),
                        c.upload_reserved), else_=sa.func.coalesce(c.size, 0))
    held = reserved if image_id is None else sa.case((c.id == image_id, 0), else_=reserved)
    # Staged data: a stage in flight counts what it reserved (cleared once staged), then the
    # staged size, until the import ends (active) or fails (queued, the data deleted).
    staged_bytes = sa.case((c.upload_reserved.is_not(None), c.upload_reserved),
                           else_=sa.func.coalesce(c.size, 0))
    staging = c.status.in_([str(Status.UPLOADING), str(Status.IMPORTING)])
    staged = sa.case((staging if image_id is None else sa.and_(staging, c.id != image_id),
                      staged_bytes), else_=0)
    row = conn.execute(sa.select(
        sa.func.count(), sa.func.coalesce(sa.func.sum(sa.case((c.status.in_(_RECEIVING), 1),
                                                              else_=0)), 0),
        sa.func.coalesce(sa.func.sum(held), 0), sa.func.coalesce(sa.func.sum(staged), 0),
    ).where(c.owner == owner if owner is not None else c.owner.is_(None),
            c.deleted.is_(False), c.status.not_in(_NOT_LIVE))).one()
    return Usage(count_total=int(row[0]), count_uploading=int(row[1]), size_total=int(row[2]),
                 stage_total=int(row[3]))


def _one_image(conn: Connection, image_id: str) -> Image | None:
    return _image_of_rows(image_id, conn.execute(_ONE_IMAGE, {"image_id": image_id}).all())


def _image_of_rows(image_id: str, rows: Sequence[Sequence[Any]]) -> Image | None:
    image = next((row for row in rows if row[0] == "i"), None)
    if image is None:
        return None
    related = _Related([image_id])
    related.add(row for row in rows if row[0] != "i")
    return _image(image[_RELATED_WIDTH:], *related.of(image_id))


def _location(store: str, url: str, meta: str | None, status: str | None) -> Location:
    return Location(store, url, json.loads(meta or "{}"),
                    LocationStatus(status or LocationStatus.ACTIVE))


def _has_location(*also: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
    return sa.exists().where(image_locations.c.image_id == images.c.id, *also)


def _add_tags(conn: Connection, image_id: str, tags: Iterable[str]) -> None:
    values = [{"image_id": image_id, "value": t} for t in dict.fromkeys(tags)]
    if values:
        _INSERT_TAG.run(conn, values)


def _change_tags(conn: Connection, image_id: str, changes: Changes) -> None:
    of_image = image_tags.c.image_id == image_id
    if changes.replace_tags is not None:
        conn.execute(image_tags.delete().where(of_image))
        _add_tags(conn, image_id, changes.replace_tags)
        return
    gone = changes.remove_tags | set(changes.add_tags)
    if gone:
        conn.execute(image_tags.delete().where(of_image, image_tags.c.value.in_(list(gone))))
    _add_tags(conn, image_id, (t for t in changes.add_tags if t not in changes.remove_tags))


def _tag_count(conn: Connection, image_id: str) -> int:
    return int(conn.execute(
        sa.select(sa.func.count()).where(image_tags.c.image_id == image_id)).scalar_one())


def _replace_locations(
    conn: Connection, image_id: str, locations: Sequence[Location],
    before: Sequence[Location] | None,
) -> None:
    """Make the image's locations exactly ``locations``, in that order, if they still are
    ``before`` (under the row lock the caller holds); Conflict, undoing the transaction,
    otherwise."""
    locs = image_locations.c
    if before is not None:
        stored = [_location(*row) for row in conn.execute(
            sa.select(locs.store, locs.url, locs.meta, locs.status)
            .where(locs.image_id == image_id).order_by(locs.position))]
        if stored != list(before):
            raise Conflict("The image's locations changed while they were being updated; "
                           "try again.")
    conn.execute(image_locations.delete().where(locs.image_id == image_id))
    _add_locations(conn, image_id, locations, start=0)


def _add_locations(
    conn: Connection, image_id: str, locations: Sequence[Location], start: int | None = None
) -> None:
    """Append locations after the image's others (``start``: the first free position, when
    the caller knows it, as for a new image)."""
    if not locations:
        return
    if start is None:
        start = _NEXT_LOCATION.scalar(conn, {_ID_PARAM: image_id})
    _INSERT_LOCATION.run(conn, [
        {"image_id": image_id, "position": start + n, "store": loc.store, "url": loc.url,
         "meta": json.dumps(dict(loc.metadata)), "status": str(loc.status)}
        for n, loc in enumerate(locations)])


def _image(
    row: Sequence[Any], properties: dict[str, str | None], tags: list[str] | None = None,
    locations: list[Location] | None = None,
) -> Image:
    # The image columns come first in every select of this module, in _IMAGE_COLUMNS order.
    values: list[Any] = list(row[:len(_IMAGE_COLUMNS)])
    values[_STATUS_AT] = _STATUSES[values[_STATUS_AT]]
    values[_VISIBILITY_AT] = _VISIBILITIES[values[_VISIBILITY_AT]]
    if values[_FAILURE_AT] is not None:
        values[_FAILURE_AT] = _STATUSES[values[_FAILURE_AT]]
    values += [properties, tags or [], locations or []]
    return Image(*values)


def _directed(keys: Iterable[_SortColumn]) -> list[Any]:
    return [key.column.desc() if key.descending else key.column.asc() for key in keys]


def _filter_column(condition: Filter) -> sa.Column[Any]:
    """An unknown size compares (gt, lt, ...) as 0, as v1 always showed it; it is still null
    to eq, neq and in."""
    if condition.field == "size" and condition.op in _COMPARISONS and condition.op not in (
        Op.EQ, Op.NEQ
    ):
        return images.c.size_sort
    return images.c[condition.field]


def _condition(column: sa.Column[Any], op: Op, value: Any) -> sa.ColumnElement[bool]:
    """One Filter as SQL, with null its own value (see Filter): SQL's comparisons with NULL
    are unknown, so each place null may match says so."""
    if op is Op.IN:
        matched = column.in_([v for v in value if v is not None])
        return sa.or_(matched, column.is_(None)) if None in value else matched
    if op is Op.OUTSIDE:
        low, high = (sa.literal(v, column.type) for v in value)
        outside = sa.or_(column < low, column >= high)
        return sa.or_(outside, column.is_(None)) if column.nullable else outside
    if value is None:
        return column.is_(None) if op is Op.EQ else column.is_not(None)
    if op is Op.NEQ and column.nullable:
        return column.is_distinct_from(value)
    # A bound value of the column's type: SQLAlchemy takes a bare True or False for SQL's
    # constants, which it compares only for (in)equality.
    return cast(sa.ColumnElement[bool],
                _COMPARISONS[op](column, sa.literal(value, column.type)))


def _sort_value(image: Image, name: str) -> Any:
    value = getattr(image, name)
    return _SORT_DEFAULTS.get(name) if value is None else value


def _member(row: Row[Any]) -> Member:
    return Member(image_id=row.image_id, member_id=row.member,
                  status=MemberStatus(row.status), can_share=bool(row.can_share),
                  created_at=row.created_at, updated_at=row.updated_at)
