"""One contract for the image repository, run unchanged on SQLite, PostgreSQL and MariaDB.

Each engine gets a fresh database (a temp file, or a throw-away database on the local server)
migrated with the project's Alembic history; a server that is not reachable skips its tests
with the reason (CI fails on skips).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.model import (
    Filter,
    Image,
    ListQuery,
    Op,
    Scope,
    SortKey,
    Status,
    now,
)
from glimpse.errors import Conflict, OverLimit
from tests import databases


@pytest.fixture(scope="module", params=databases.ENGINES)
def repo(request: pytest.FixtureRequest) -> Iterator[SqlImageRepository]:
    for url in databases.or_skip(request.param):
        engine = db_engine.create_engine(url)
        db_engine.upgrade(engine)
        yield SqlImageRepository(engine)
        engine.dispose()


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex


def new_image(tag: str, **fields: object) -> Image:
    fields.setdefault("status", Status.QUEUED)
    props = {"tag": tag, **fields.pop("properties", {})}  # type: ignore[dict-item]
    return Image(id=str(uuid.uuid4()), properties=props, **fields)  # type: ignore[arg-type]


def test_create_and_get_round_trip_every_field(repo: SqlImageRepository, tag: str) -> None:
    stamp = dt.datetime(2024, 2, 29, 23, 59, 58, 123456)
    image = new_image(
        tag, name="Ubuntu \U0001f600 caf\u00e9", size=2**40 + 1, virtual_size=7, checksum="a" * 32,
        os_hash_algo="sha512", os_hash_value="b" * 128, disk_format="qcow2",
        container_format="bare", min_disk=2147483647, min_ram=1, is_public=True,
        protected=True, owner="tenant-" + tag, created_at=stamp, updated_at=stamp,
        store="file", location="somewhere",
        properties={"owner_specified.openstack.md5": "x", "empty": None,
                    "emoji": "\u2603\U0001f680"},
    )
    repo.create(image)
    loaded = repo.get(image.id)
    assert loaded == image
    assert repo.get(str(uuid.uuid4())) is None


def test_ids_are_never_reused(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag)
    repo.create(image)
    with pytest.raises(Conflict):
        repo.create(Image(id=image.id, status=Status.QUEUED))
    repo.mark_deleted(image.id, Status.DELETED, now(), expected_status=Status.QUEUED)
    with pytest.raises(Conflict):
        repo.create(Image(id=image.id, status=Status.QUEUED))


def test_conditional_status_change(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag)
    repo.create(image)
    claimed = repo.update(image.id, {"status": Status.SAVING}, expected_status=Status.QUEUED)
    assert claimed is not None and claimed.status is Status.SAVING
    # A second claimant finds the status moved and changes nothing.
    assert repo.update(image.id, {"status": Status.SAVING, "name": "late"},
                       expected_status=Status.QUEUED) is None
    assert repo.get(image.id).name is None  # type: ignore[union-attr]
    assert repo.update(str(uuid.uuid4()), {"name": "x"}) is None


def test_set_fields_is_the_same_compare_and_swap_without_a_reload(
    repo: SqlImageRepository, tag: str
) -> None:
    image = new_image(tag)
    repo.create(image)
    assert repo.set_fields(image.id, {"status": Status.SAVING}, expected_status=Status.QUEUED)
    assert not repo.set_fields(image.id, {"status": Status.KILLED, "name": "late"},
                               expected_status=Status.QUEUED)
    current = repo.get(image.id)
    assert current is not None and current.status is Status.SAVING and current.name is None
    assert repo.set_fields(image.id, {"store": None, "location": None})
    assert not repo.set_fields(str(uuid.uuid4()), {"name": "x"})


def test_property_updates_merge_or_purge(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag, properties={"a": "1", "b": "2"})
    repo.create(image)
    merged = repo.update(image.id, {}, properties={"b": "20", "c": "3"})
    assert merged is not None and merged.properties == {"tag": tag, "a": "1", "b": "20", "c": "3"}
    purged = repo.update(image.id, {}, properties={"c": "30"}, purge_properties=True)
    assert purged is not None and purged.properties == {"c": "30"}

    def at_most_two(count: int) -> None:
        if count > 2:
            raise OverLimit("too many")

    with pytest.raises(OverLimit):
        repo.update(image.id, {"name": "n"}, properties={"d": "4", "e": "5"},
                    check_property_count=at_most_two)
    unchanged = repo.get(image.id)
    assert unchanged is not None and unchanged.properties == {"c": "30"}
    assert unchanged.name is None  # the whole update was undone


def test_mark_deleted_drops_properties_and_members(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag)
    repo.create(image)
    repo.set_member(image.id, "m1", None)
    when = now()
    deleted = repo.mark_deleted(image.id, Status.DELETED, when, expected_status=Status.QUEUED)
    assert deleted is not None
    assert (deleted.status, deleted.deleted, deleted.deleted_at) == (Status.DELETED, True, when)
    assert deleted.properties == {} and repo.members(image.id) == []
    assert repo.mark_deleted(image.id, Status.DELETED, when, expected_status=Status.QUEUED) is None


def test_members(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag, owner="o-" + tag)
    repo.create(image)
    repo.set_member(image.id, "b", None)
    repo.set_member(image.id, "a", True)
    repo.set_member(image.id, "b", None)  # unchanged
    assert [(m.member_id, m.can_share) for m in repo.members(image.id)] == [
        ("b", False), ("a", True)]  # insertion order
    repo.set_member(image.id, "b", True)
    assert repo.is_member(image.id, "b") and not repo.is_member(image.id, "z")
    assert repo.remove_member(image.id, "a") and not repo.remove_member(image.id, "a")
    repo.replace_members(image.id, [("c", None), ("b", None)])
    assert {(m.member_id, m.can_share) for m in repo.members(image.id)} == {
        ("c", False), ("b", True)}
    shared = {m.image_id: owner for m, owner in repo.shared_with("c")}
    assert shared.get(image.id) == "o-" + tag
    repo.replace_members(image.id, [])
    assert repo.members(image.id) == []


def listing(repo: SqlImageRepository, tag: str, **query: object) -> list[Image]:
    return repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag},
                                      limit=1000, **query))  # type: ignore[arg-type]


def test_filters_and_visibility(repo: SqlImageRepository, tag: str) -> None:
    mine = new_image(tag, owner="me", name="n1", size=10, disk_format="raw")
    public = new_image(tag, owner="other", is_public=True, size=20)
    shared = new_image(tag, owner="other", size=30)
    hidden = new_image(tag, owner="other", size=40)
    killed = new_image(tag, owner="me", status=Status.KILLED)
    for image in (mine, public, shared, hidden, killed):
        repo.create(image)
    repo.set_member(shared.id, "me", None)
    visible = repo.list_images(ListQuery(scope=Scope.VISIBLE, owner="me",
                                         properties={"tag": tag}, limit=100))
    assert {i.id for i in visible} == {mine.id, public.id, shared.id}
    assert {i.id for i in listing(repo, tag)} == {mine.id, public.id, shared.id, hidden.id}
    non_public = repo.list_images(ListQuery(scope=Scope.NON_PUBLIC, properties={"tag": tag},
                                            limit=100))
    assert public.id not in {i.id for i in non_public}
    assert [i.id for i in listing(repo, tag, filters=[Filter("name", Op.EQ, "n1")])] == [mine.id]
    sized = listing(repo, tag, filters=[Filter("size", Op.GTE, 20), Filter("size", Op.LTE, 30)])
    assert {i.id for i in sized} == {public.id, shared.id}
    changed = listing(repo, tag, changes_since=dt.datetime(2000, 1, 1))
    assert killed.id in {i.id for i in changed}


@pytest.mark.parametrize("sort_key", ["name", "status", "container_format", "disk_format",
                                      "size", "id", "created_at", "updated_at"])
@pytest.mark.parametrize("sort_dir", ["asc", "desc"])
def test_keyset_paging_returns_each_image_once_in_order(
    repo: SqlImageRepository, tag: str, sort_key: str, sort_dir: str
) -> None:
    base = dt.datetime(2020, 1, 1)
    names = ["b", None, "a", "b", None, "c", "a"]
    for n, name in enumerate(names):
        stamp = base + dt.timedelta(microseconds=n // 2)  # ties on created_at too
        repo.create(new_image(tag, name=name, size=n % 3, disk_format=[None, "raw"][n % 2],
                              created_at=stamp, updated_at=stamp))
    sort = [SortKey(sort_key, sort_dir == "desc")]
    expected = [i.id for i in listing(repo, tag, sort=sort)]
    assert len(expected) == len(names)
    pages: list[str] = []
    marker = None
    while True:
        page = repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag}, limit=2,
                                          sort=sort, marker=marker))
        pages += [i.id for i in page]
        if len(page) < 2:
            break
        marker = page[-1]
    assert pages == expected


def test_usage_stale_uploads_and_leftovers(repo: SqlImageRepository, tag: str) -> None:
    owner = "u-" + tag
    old = now() - dt.timedelta(hours=1)
    active = new_image(tag, owner=owner, size=100, status=Status.ACTIVE, store="file",
                       location="x")
    stale = new_image(tag, owner=owner, size=50, status=Status.SAVING, store="file",
                      updated_at=old)
    killed = new_image(tag, owner=owner, size=1000, status=Status.KILLED, store="file",
                       location="y")
    for image in (active, stale, killed):
        repo.create(image)
    assert repo.usage(owner, exclude_id="none") == 150
    assert repo.usage(owner, exclude_id=active.id) == 50
    assert stale.id in {i.id for i in repo.find_stale_uploads(now() - dt.timedelta(minutes=1))}
    assert active.id not in {i.id for i in repo.find_stale_uploads(now())}
    holding = {i.id for i in repo.images_holding_data([str(Status.ACTIVE)])}
    assert active.id in holding and killed.id not in holding
    assert killed.id in {i.id for i in repo.leftovers(["file"], 10_000)}


@pytest.mark.parametrize("sort_key", ["name", "status", "size", "created_at", "updated_at"])
@pytest.mark.parametrize("sort_dir", ["asc", "desc"])
def test_visible_pages_merge_public_owned_and_shared_once_each(
    repo: SqlImageRepository, tag: str, sort_key: str, sort_dir: str
) -> None:
    """A tenant's list is the union of public, owned and shared images (each listed once, even
    when it is several of these), paged across ties in every key and across the three kinds."""
    me, other = "me-" + tag, "other-" + tag
    base = dt.datetime(2020, 1, 1)
    kinds = [  # (owner, public, shared with me, visible)
        (other, True, False, True), (me, False, False, True), (other, False, True, True),
        (other, False, False, False), (me, True, False, True), (other, True, True, True),
        (me, False, True, True), (None, False, True, True), (None, False, False, False),
        (None, True, False, True),
    ]
    visible = set()
    for n, (owner, public, shared, seen) in enumerate(kinds):
        stamp = base + dt.timedelta(microseconds=n // 3)  # ties on created_at
        image = new_image(tag, owner=owner, is_public=public, name=[None, "a", "b"][n % 3],
                          size=n % 2, status=[Status.QUEUED, Status.ACTIVE][n % 2],
                          created_at=stamp, updated_at=stamp, properties={"k": "v"})
        repo.create(image)
        if shared:
            repo.set_member(image.id, me, None)
        if seen:
            visible.add(image.id)
    sort = [SortKey(sort_key, sort_dir == "desc")]
    everything = listing(repo, tag, sort=sort)
    expected = [i.id for i in everything if i.id in visible]
    assert len(expected) == len(visible) == 8

    def page(marker: Image | None, limit: int) -> list[Image]:
        return repo.list_images(ListQuery(
            scope=Scope.VISIBLE, owner=me, properties={"tag": tag, "k": "v"}, limit=limit,
            sort=sort, marker=marker))

    assert [i.id for i in page(None, 100)] == expected
    pages: list[str] = []
    marker = None
    while True:
        got = page(marker, 2)
        pages += [i.id for i in got]
        if not got:
            break
        marker = got[-1]
    assert pages == expected
    assert page(everything[-1], 2) == []  # a marker at the very end: nothing after it
    assert all(i.properties == {"tag": tag, "k": "v"} for i in page(None, 100))
    anonymous = repo.list_images(ListQuery(scope=Scope.VISIBLE, owner=None, limit=100,
                                           properties={"tag": tag}, sort=sort))
    assert [i.id for i in anonymous] == [i.id for i in everything if i.is_public]

