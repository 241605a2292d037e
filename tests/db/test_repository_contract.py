"""One contract for the image repository, run unchanged on SQLite, PostgreSQL and MariaDB.

Each engine gets a fresh database (a temp file, or a throw-away database on the local server)
migrated with the project's Alembic history; a server that is not reachable skips its tests
with the reason (CI fails on skips).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import operator
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from glimpse.db import engine as db_engine
from glimpse.db import repository
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.fields import FILTERABLE
from glimpse.domain.model import (
    Changes,
    Filter,
    Image,
    ListQuery,
    Location,
    LocationStatus,
    MemberStatus,
    Op,
    Scope,
    SortKey,
    Status,
    Visibility,
    now,
)
from glimpse.errors import Conflict, NotFound, OverLimit
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
        container_format="bare", min_disk=2147483647, min_ram=1,
        visibility=Visibility.COMMUNITY, os_hidden=True,
        protected=True, owner="tenant-" + tag, created_at=stamp, updated_at=stamp,
        locations=[Location("file", "somewhere"),
                   Location("http", "https://example.com/x", {"k": "v"},
                            LocationStatus.PENDING_DELETE)],
        tags=["a", "\u2603"],
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
    claimed = repo.update(image.id, Changes(fields={"status": Status.SAVING}),
                          expected_status=Status.QUEUED, add_locations=[Location("file", "k")])
    assert claimed is not None and claimed.status is Status.SAVING
    assert claimed.locations == [Location("file", "k")]
    # A second claimant finds the status moved and changes nothing.
    assert repo.update(image.id, Changes(fields={"status": Status.SAVING, "name": "late"}),
                       expected_status=Status.QUEUED, add_locations=[Location("file", "j")]) \
        is None
    current = repo.get(image.id)
    assert current is not None and current.name is None
    assert current.locations == [Location("file", "k")]
    assert repo.update(str(uuid.uuid4()), Changes(fields={"name": "x"})) is None
    repo.remove_location(image.id, "file", "k")
    assert repo.get(image.id).locations == []  # type: ignore[union-attr]


def test_the_location_list_is_swapped_only_if_unchanged(repo: SqlImageRepository,
                                                        tag: str) -> None:
    """v2's legacy locations: the whole list replaced, in its order and with its metadata, in
    the update's transaction, only while the stored list is the one read."""
    first, second = Location("file", "k", {"a": 1}), Location("http", "http://x/y", {"b": [2]})
    image = new_image(tag, status=Status.ACTIVE, locations=[first])
    repo.create(image)
    swapped = repo.update(image.id, Changes(fields={"name": "n"}, locations=[second, first],
                                            locations_before=[first]))
    assert swapped is not None and swapped.locations == [second, first]
    with pytest.raises(Conflict):
        repo.update(image.id, Changes(fields={"name": "stale"}, locations=[],
                                      locations_before=[first]))
    current = repo.get(image.id)
    assert current is not None and current.name == "n"
    assert current.locations == [second, first]
    # Lists load locations only when asked.
    listed = repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag}))
    assert [i.locations for i in listed] == [[]]
    listed = repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag},
                                        with_locations=True))
    assert [i.locations for i in listed] == [[second, first]]


@pytest.mark.parametrize("driver_fails", [False, True], ids=["as-is", "driver-fails"])
def test_a_page_carries_each_image_s_own_properties_tags_and_locations(
    repo: SqlImageRepository, tag: str, driver_fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page's related rows are read in one statement for all of its images (on SQLite
    through the driver; SQLAlchemy's way when the driver fails, and on the other engines)."""
    if driver_fails:
        def fail(*args: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")
        monkeypatch.setattr(repository._SqliteStatement, "rows", fail)
    made = [new_image(tag, name=f"n{n}", properties={f"p{n}": f"v{n}", "shared": None},
                      tags=[f"t{n}", "common"][:n % 3],
                      locations=[Location("file", f"f{n}-{k}") for k in range(n % 3)])
            for n in range(7)]
    for image in made:
        repo.create(image)
    for with_locations in (False, True):
        listed = repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag},
                                            sort=[SortKey("name", False)], limit=5,
                                            with_locations=with_locations))
        expected = made[:5] if with_locations else [
            dataclasses.replace(image, locations=[]) for image in made[:5]]
        assert listed == [dataclasses.replace(image, tags=sorted(image.tags))
                          for image in expected]
    assert repo.get(made[1].id) == made[1]  # a single image's read falls back as well


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
    assert repo.set_fields(image.id, {"os_hidden": True})
    assert not repo.set_fields(str(uuid.uuid4()), {"name": "x"})


def test_property_updates_merge_or_purge(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag, properties={"a": "1", "b": "2"})
    repo.create(image)
    merged = repo.update(image.id, Changes(set_properties={"b": "20", "c": "3"}))
    assert merged is not None and merged.properties == {"tag": tag, "a": "1", "b": "20", "c": "3"}
    removed = repo.update(image.id, Changes(remove_properties={"a", "missing"}))
    assert removed is not None and removed.properties == {"tag": tag, "b": "20", "c": "3"}
    spared = repo.update(image.id, Changes(
        set_properties={"ns_a": "x", "ns_b%": "y", "nsx": "z", "n_s": "w"}))
    assert spared is not None
    kept = repo.update(image.id, Changes(keep_properties=frozenset({"b"}), keep_namespace="ns_"))
    # LIKE's wildcards in the namespace are literal: "n_s" and "nsx" do not start with "ns_".
    assert kept is not None and kept.properties == {"b": "20", "ns_a": "x", "ns_b%": "y"}
    purged = repo.update(image.id, Changes(set_properties={"c": "30"},
                                           keep_properties=frozenset()))
    assert purged is not None and purged.properties == {"c": "30"}

    def at_most_two(properties: int, tags: int) -> None:
        if properties > 2 or tags > 2:
            raise OverLimit("too many")

    with pytest.raises(OverLimit):
        repo.update(image.id, Changes(fields={"name": "n"}, set_properties={"d": "4", "e": "5"}),
                    check_counts=at_most_two)
    with pytest.raises(OverLimit):
        repo.update(image.id, Changes(add_tags=["x", "y", "z"]), check_counts=at_most_two)
    unchanged = repo.get(image.id)
    assert unchanged is not None and unchanged.properties == {"c": "30"}
    assert unchanged.name is None and unchanged.tags == []  # the whole update was undone


def test_tag_updates(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag, tags=["one"])
    repo.create(image)
    added = repo.update(image.id, Changes(add_tags=["two", "one", "\u2713"]))
    assert added is not None and sorted(added.tags) == sorted(["one", "two", "\u2713"])
    removed = repo.update(image.id, Changes(remove_tags={"one", "absent"}))
    assert removed is not None and sorted(removed.tags) == sorted(["two", "\u2713"])
    # Tags are listed with the page, as on a get.
    listed = repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag}))
    assert [sorted(i.tags) for i in listed] == [sorted(removed.tags)]
    deleted = repo.mark_deleted(image.id, Status.DELETED, now(), expected_status=Status.QUEUED)
    assert deleted is not None and deleted.tags == []


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
    repo.replace_members(image.id, [("c", None), ("b", None)], MemberStatus.PENDING)
    assert {(m.member_id, m.can_share, m.status) for m in repo.members(image.id)} == {
        ("c", False, MemberStatus.PENDING), ("b", True, MemberStatus.ACCEPTED)}
    before = next(m for m in repo.members(image.id) if m.member_id == "c")
    repo.set_member(image.id, "c", None, status=MemberStatus.REJECTED)
    after = next(m for m in repo.members(image.id) if m.member_id == "c")
    assert after.status is MemberStatus.REJECTED and after.created_at == before.created_at
    assert after.updated_at is not None and before.updated_at is not None
    assert after.updated_at >= before.updated_at
    shared = {m.image_id: owner for m, owner in repo.shared_with("c")}
    assert shared.get(image.id) == "o-" + tag
    repo.replace_members(image.id, [], MemberStatus.ACCEPTED)
    assert repo.members(image.id) == []


def test_add_member_and_set_member_status(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag, owner="o-" + tag)
    repo.create(image)
    added = repo.add_member(image.id, "b", MemberStatus.PENDING)
    assert (added.image_id, added.member_id, added.status, added.can_share) == (
        image.id, "b", MemberStatus.PENDING, False)
    assert added.created_at is not None and added.created_at == added.updated_at
    assert repo.members(image.id) == [added]
    # An existing membership is a Conflict that changes nothing, whatever its status.
    with pytest.raises(Conflict):
        repo.add_member(image.id, "b", MemberStatus.ACCEPTED)
    assert repo.members(image.id) == [added]
    # Member ids compare exactly (MariaDB's default collation would not).
    other = repo.add_member(image.id, "B", MemberStatus.ACCEPTED)
    assert [m.member_id for m in repo.members(image.id)] == ["b", "B"]
    previous = added
    for status in (MemberStatus.ACCEPTED, MemberStatus.ACCEPTED, MemberStatus.REJECTED,
                   MemberStatus.PENDING):
        changed = repo.set_member_status(image.id, "b", status)
        assert changed is not None
        assert (changed.member_id, changed.status, changed.created_at) == (
            "b", status, added.created_at)
        assert changed.updated_at is not None and previous.updated_at is not None
        assert changed.updated_at > previous.updated_at
        previous = changed
    assert repo.members(image.id) == [previous, other]
    assert repo.set_member_status(image.id, "nobody", MemberStatus.ACCEPTED) is None
    assert repo.remove_member(image.id, "b")
    again = repo.add_member(image.id, "b", MemberStatus.PENDING)
    assert again.status is MemberStatus.PENDING
    repo.mark_deleted(image.id, Status.DELETED, now(), expected_status=Status.QUEUED)
    with pytest.raises(NotFound):
        repo.add_member(image.id, "c", MemberStatus.PENDING)
    with pytest.raises(NotFound):
        repo.set_member_status(image.id, "b", MemberStatus.ACCEPTED)


def test_add_member_checks_the_count_it_makes(repo: SqlImageRepository, tag: str) -> None:
    image = new_image(tag)
    repo.create(image)
    seen: list[int] = []

    def at_most_two(count: int) -> None:
        seen.append(count)
        if count > 2:
            raise OverLimit("too many")

    repo.add_member(image.id, "a", MemberStatus.PENDING, at_most_two)
    repo.add_member(image.id, "b", MemberStatus.PENDING, at_most_two)
    with pytest.raises(OverLimit):
        repo.add_member(image.id, "c", MemberStatus.PENDING, at_most_two)
    assert seen == [1, 2, 3]
    assert [m.member_id for m in repo.members(image.id)] == ["a", "b"]


def test_concurrent_add_member_of_one_member(repo: SqlImageRepository, tag: str) -> None:
    """Adds of one membership apply one at a time under the image's lock: one succeeds, the
    others find its row (Conflict, never a duplicate-key error)."""
    image = new_image(tag)
    repo.create(image)
    start = threading.Barrier(6)
    results: list[str] = []

    def add() -> None:
        start.wait()
        try:
            repo.add_member(image.id, "m", MemberStatus.PENDING)
            results.append("ok")
        except Conflict:
            results.append("409")

    threads = [threading.Thread(target=add) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == ["409"] * 5 + ["ok"]
    assert [m.member_id for m in repo.members(image.id)] == ["m"]


def test_update_on_properties_before_is_a_compare_and_set(repo: SqlImageRepository,
                                                          tag: str) -> None:
    """A property condition that fails changes nothing, fields included."""
    image = new_image(tag, owner="me", name="before")
    repo.create(image)
    took = repo.update(image.id, Changes(fields={"name": "first"},
                                         set_properties={"lock": "a"},
                                         properties_before={"lock": None}))
    assert took is not None and took.properties["lock"] == "a"
    refused = repo.update(image.id, Changes(fields={"name": "second"},
                                            set_properties={"lock": "b"},
                                            properties_before={"lock": None}))
    assert refused is None
    stored = repo.get(image.id)
    assert stored is not None and stored.name == "first" and stored.properties["lock"] == "a"
    handed = repo.update(image.id, Changes(fields={"name": "third"},
                                           set_properties={"lock": "c"},
                                           properties_before={"lock": "a"}))
    assert handed is not None and handed.name == "third" and handed.properties["lock"] == "c"


def test_concurrent_compare_and_set_of_a_property(repo: SqlImageRepository, tag: str) -> None:
    """Writers racing to take a lock property that is absent: exactly one takes it."""
    image = new_image(tag)
    repo.create(image)
    start = threading.Barrier(6)
    winners: list[str] = []

    def take(name: str) -> None:
        start.wait()
        if repo.update(image.id, Changes(fields={"updated_at": now()},
                                         set_properties={"lock": name},
                                         properties_before={"lock": None}),
                       expected_status=Status.QUEUED) is not None:
            winners.append(name)

    threads = [threading.Thread(target=take, args=(f"t{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(winners) == 1
    stored = repo.get(image.id)
    assert stored is not None and stored.properties["lock"] == winners[0]


def listing(repo: SqlImageRepository, tag: str, **query: object) -> list[Image]:
    return repo.list_images(ListQuery(scope=Scope.ALL, properties={"tag": tag},
                                      limit=1000, **query))  # type: ignore[arg-type]


def test_filters_and_visibility(repo: SqlImageRepository, tag: str) -> None:
    mine = new_image(tag, owner="me", name="n1", size=10, disk_format="raw")
    public = new_image(tag, owner="other", visibility=Visibility.PUBLIC, size=20)
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
    active = new_image(tag, owner=owner, size=100, status=Status.ACTIVE,
                       locations=[Location("file", "x")])
    stale = new_image(tag, owner=owner, size=50, status=Status.SAVING, updated_at=old,
                      locations=[Location("file", "s")])
    killed = new_image(tag, owner=owner, size=1000, status=Status.KILLED,
                       locations=[Location("file", "y")])
    unknown = new_image(tag, owner=owner, size=None)
    for image in (active, stale, killed, unknown):
        repo.create(image)
    assert repo.usage(owner, exclude_id="none") == 150
    assert repo.usage(owner, exclude_id=active.id) == 50
    assert stale.id in {i.id for i in repo.find_stale_uploads(now() - dt.timedelta(minutes=1))}
    assert active.id not in {i.id for i in repo.find_stale_uploads(now())}
    holding = {i.id for i in repo.images_holding_data([str(Status.ACTIVE)])}
    assert active.id in holding and killed.id not in holding
    assert killed.id in {i.id for i in repo.leftovers(["file"], 10_000)}
    assert killed.id not in {i.id for i in repo.leftovers(["other"], 10_000)}


def test_node_uploads_and_claim_conditional_moves(repo: SqlImageRepository, tag: str) -> None:
    """A claim records its node and incarnation; a node's uploads in flight are found by node,
    and a move conditional on the claim's incarnation misses an image claimed again since."""
    node, peer = "node-" + tag, "peer-" + tag
    mine = new_image(tag, status=Status.SAVING, claim_node=node, claim_incarnation="a" * 32,
                     failure_status=Status.QUEUED)
    importing = new_image(tag, status=Status.IMPORTING, claim_node=node,
                          claim_incarnation="b" * 32)
    done = new_image(tag, status=Status.ACTIVE, claim_node=node, claim_incarnation="a" * 32)
    peers = new_image(tag, status=Status.SAVING, claim_node=peer, claim_incarnation="a" * 32)
    for image in (mine, importing, done, peers):
        repo.create(image)
    found = {i.id: i for i in repo.find_node_uploads(node)}
    assert set(found) == {mine.id, importing.id}
    assert (found[mine.id].claim_node, found[mine.id].claim_incarnation) == (node, "a" * 32)
    assert found[mine.id].failure_status is Status.QUEUED
    assert repo.find_node_uploads("nobody-" + tag) == []
    # Claimed again by another incarnation: the move decided on the old claim misses it.
    assert repo.set_fields(mine.id, {"claim_incarnation": "c" * 32},
                           expected_status=Status.SAVING)
    assert not repo.set_fields(mine.id, {"status": Status.QUEUED},
                               expected_status=Status.SAVING, expected_incarnation="a" * 32)
    assert repo.set_fields(mine.id, {"status": Status.QUEUED},
                           expected_status=Status.SAVING, expected_incarnation="c" * 32)
    assert set(i.id for i in repo.find_node_uploads(node)) == {importing.id}


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
        image = new_image(tag, owner=owner,
                          visibility=Visibility.PUBLIC if public else Visibility.SHARED,
                          name=[None, "a", "b"][n % 3],
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
    assert [i.id for i in anonymous] == [
        i.id for i in everything if i.visibility is Visibility.PUBLIC]


# -- list queries over one corpus ------------------------------------------------------------
# A few hundred images with ties in every sort key, nulls in the nullable ones, and each kind
# of visibility, made once per engine; every list below is compared with the same list computed
# here in Python. Values are chosen to order alike under any collation (lowercase letters,
# UUIDs), so that PostgreSQL's locale and MariaDB's binary collation agree with Python.


@dataclasses.dataclass
class Corpus:
    tag: str
    me: str
    images: list[Image]  # every image made, deleted and killed ones too
    memberships: dict[str, MemberStatus]  # me's, by image id (some on images not shared)

    @property
    def listed(self) -> list[Image]:
        """What a list without changes-since may return: live images, never killed ones."""
        return [i for i in self.images if not i.deleted and i.status is not Status.KILLED]

    def visible(self, member_status: MemberStatus | None = MemberStatus.ACCEPTED,
                others_community: bool = False) -> list[Image]:
        """Scope.VISIBLE for me: public, mine, shared with me in that member status (any
        for None), and others' community images when asked for."""
        return [i for i in self.listed
                if i.visibility is Visibility.PUBLIC or i.owner == self.me
                or (i.visibility is Visibility.SHARED and i.id in self.memberships
                    and member_status in (None, self.memberships[i.id]))
                or (others_community and i.visibility is Visibility.COMMUNITY)]

    def all_but_others_community(self) -> list[Image]:
        return [i for i in self.listed
                if i.visibility is not Visibility.COMMUNITY or i.owner == self.me]


@pytest.fixture(scope="module")
def corpus(repo: SqlImageRepository) -> Corpus:
    tag = uuid.uuid4().hex
    me, other = "me-" + tag, "other-" + tag
    base = dt.datetime(2021, 3, 4, 5, 6, 7)
    made = Corpus(tag, me, [], {})
    statuses = [Status.QUEUED, Status.ACTIVE, Status.SAVING, Status.DEACTIVATED, Status.ACTIVE,
                Status.KILLED, Status.ACTIVE]
    for n in range(240):
        image = new_image(
            tag,
            name=[None, "", "a", "b", "ab", "c"][n % 6],
            status=Status.DELETED if n % 31 == 4 else statuses[n % 7],
            deleted=n % 31 == 4,
            size=[0, 5, 5, 10, 2**40][n % 5],
            virtual_size=[None, 5, 7][n % 3],
            disk_format=[None, "raw", "qcow2", "iso"][n % 4],
            container_format=[None, "bare", "ovf"][n % 3 if n % 2 else 2 - n % 3],
            min_ram=n % 4 * 512, min_disk=n % 3, protected=n % 4 == 1, os_hidden=n % 6 == 5,
            owner=[me, other, None][n % 3],
            visibility=(Visibility.PUBLIC if n % 5 == 2 else Visibility.COMMUNITY if n % 7 == 3
                        else Visibility.PRIVATE if n % 11 == 6 else Visibility.SHARED),
            tags=[["a"], ["a", "b"], [], ["b"]][n % 4],
            checksum=[None, "a" * 32, "b" * 32][n % 3],
            os_hash_algo=[None, "sha512", "sha256"][n % 3],
            os_hash_value=[None, "c" * 128, "d" * 128][n % 2 + n % 7 // 6],
            created_at=base + dt.timedelta(milliseconds=n // 4),  # ties of four
            updated_at=base + dt.timedelta(seconds=n * 7 % 60),  # ties across the range
        )
        repo.create(image)
        status = (MemberStatus.ACCEPTED if n % 6 == 5 else MemberStatus.PENDING if n % 6 == 1
                  else MemberStatus.REJECTED if n % 12 == 8 else None)
        if status is not None and image.owner != me and not image.deleted:
            repo.set_member(image.id, me, None, status=status)
            made.memberships[image.id] = status
        made.images.append(image)
    return made


def in_order(images: list[Image], order: list[SortKey]) -> list[str]:
    """The ids in ``order`` (a total order), null sorting as empty: stable sorts, last key
    first."""
    result = list(images)
    for key in reversed(order):
        result.sort(key=lambda i, f=key.field: "" if getattr(i, f) is None else getattr(i, f),
                    reverse=key.descending)
    return [i.id for i in result]


def asc(field: str) -> SortKey:
    return SortKey(field, descending=False)


def desc(field: str) -> SortKey:
    return SortKey(field, descending=True)


# (the sort asked for, the total order it must give). The tie-breakers created_at, id take the
# direction of the sort when it has one, and are descending when its directions are mixed.
SORT_SHAPES = [
    ([asc("name")], [asc("name"), asc("created_at"), asc("id")]),
    ([desc("name")], [desc("name"), desc("created_at"), desc("id")]),
    ([desc("disk_format")], [desc("disk_format"), desc("created_at"), desc("id")]),
    ([asc("created_at")], [asc("created_at"), asc("id")]),
    ([desc("id")], [desc("id")]),
    ([asc("status"), asc("disk_format")],
     [asc("status"), asc("disk_format"), asc("created_at"), asc("id")]),
    ([desc("size"), asc("name")], [desc("size"), asc("name"), desc("created_at"), desc("id")]),
    ([asc("container_format"), desc("created_at"), asc("updated_at")],
     [asc("container_format"), desc("created_at"), asc("updated_at"), desc("id")]),
    ([asc("updated_at"), asc("size"), desc("name")],
     [asc("updated_at"), asc("size"), desc("name"), desc("created_at"), desc("id")]),
    # A repeated key counts where it first appears; nothing after id (unique) counts.
    ([asc("name"), desc("name")], [asc("name"), asc("created_at"), asc("id")]),
    ([asc("id"), desc("name")], [asc("id")]),
    ([], [desc("created_at"), desc("id")]),
]
SHAPE_IDS = [",".join(f"{k.field}:{'desc' if k.descending else 'asc'}" for k in sort) or "none"
             for sort, _ in SORT_SHAPES]


@pytest.mark.parametrize(("sort", "order"), SORT_SHAPES, ids=SHAPE_IDS)
def test_sorts_give_their_total_order(
    repo: SqlImageRepository, corpus: Corpus, sort: list[SortKey], order: list[SortKey]
) -> None:
    got = [i.id for i in listing(repo, corpus.tag, sort=sort)]
    assert got == in_order(corpus.listed, order)


def test_default_sort_is_created_at_descending(repo: SqlImageRepository, corpus: Corpus) -> None:
    got = [i.id for i in listing(repo, corpus.tag)]
    assert got == in_order(corpus.listed, [desc("created_at"), desc("id")])


def test_null_sort_keys_sort_as_empty(repo: SqlImageRepository, corpus: Corpus) -> None:
    names = [i.name for i in listing(repo, corpus.tag, sort=[asc("name")])]
    empty = [n for n in names if not n]
    assert None in empty and "" in empty  # both present, and interleaved by the tie-breakers
    assert names[:len(empty)] == empty and all(names[len(empty):])


def walk(repo: SqlImageRepository, query: ListQuery, page_size: int) -> list[str]:
    """Every page of ``query`` from the start, each from the previous page's last image."""
    query.limit = page_size
    ids: list[str] = []
    while True:
        page = repo.list_images(query)
        ids += [i.id for i in page]
        if len(page) < page_size:
            return ids
        query.marker = page[-1]


@pytest.mark.parametrize(("sort", "order"), SORT_SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("scope", [Scope.ALL, Scope.VISIBLE])
def test_keyset_pages_walk_every_sort_shape(
    repo: SqlImageRepository, corpus: Corpus, scope: Scope, sort: list[SortKey],
    order: list[SortKey],
) -> None:
    """No image missed or repeated across pages, in every shape of order, in both plans (one
    index range, or the union of a tenant's three parts)."""
    query = ListQuery(scope=scope, owner=corpus.me, properties={"tag": corpus.tag}, sort=sort)
    ids = walk(repo, query, page_size=13)
    expected = in_order(corpus.visible() if scope is Scope.VISIBLE else corpus.listed, order)
    assert len(set(ids)) == len(ids)
    assert ids == expected
    assert query.marker is not None
    at_end = dataclasses.replace(query, marker=repo.get(expected[-1]))
    assert repo.list_images(at_end) == []


def test_keyset_pages_of_a_filtered_mixed_sort(repo: SqlImageRepository,
                                               corpus: Corpus) -> None:
    filters = [Filter("disk_format", Op.IN, ("raw", None)), Filter("size", Op.GT, 0)]
    order = [asc("name"), desc("size"), desc("created_at"), desc("id")]
    query = ListQuery(scope=Scope.ALL, properties={"tag": corpus.tag}, filters=filters,
                      sort=order[:2])
    expected = in_order([i for i in corpus.listed if i.disk_format in ("raw", None)
                         and i.size > 0], order)
    assert len(expected) > 30
    assert walk(repo, query, page_size=4) == expected


def matches(value: object, op: Op, operand: Any) -> bool:
    """Filter semantics in Python: null is a value of its own, never ordered."""
    if op is Op.IN:
        return value in operand
    if op is Op.OUTSIDE:  # null is outside every range, as it is not equal to any value
        low, high = operand
        return value is None or bool(value < low or value >= high)
    if operand is None:
        return (value is None) == (op is Op.EQ)
    if op is Op.NEQ:
        return value != operand
    if value is None:
        return False
    return bool({Op.EQ: operator.eq, Op.GT: operator.gt, Op.GTE: operator.ge,
                 Op.LT: operator.lt, Op.LTE: operator.le}[op](value, operand))


@pytest.mark.parametrize("field", FILTERABLE)
def test_every_operator_on_every_filterable_field(
    repo: SqlImageRepository, corpus: Corpus, field: str
) -> None:
    values = sorted({getattr(i, field) for i in corpus.listed} - {None})
    assert len(values) >= 2, "the corpus must vary every field"
    pivot = values[len(values) // 2]
    cases: list[tuple[Op, Any]] = [(op, pivot) for op in Op if op not in (Op.IN, Op.OUTSIDE)]
    cases += [(Op.IN, (values[0], pivot)), (Op.IN, ()), (Op.IN, (pivot,))]
    cases += [(Op.OUTSIDE, (values[0], pivot)), (Op.OUTSIDE, (pivot, values[-1]))]
    if any(getattr(i, field) is None for i in corpus.listed):  # a nullable field
        cases += [(Op.EQ, None), (Op.NEQ, None), (Op.IN, (values[-1], None))]
    for op, operand in cases:
        got = {i.id for i in listing(repo, corpus.tag, filters=[Filter(field, op, operand)])}
        expected = {i.id for i in corpus.listed if matches(getattr(i, field), op, operand)}
        assert got == expected, (field, op, operand)
        assert expected or (op is Op.IN and not operand) or (op is Op.GT and pivot == values[-1])


def test_filters_are_anded_and_never_list_killed_or_deleted(
    repo: SqlImageRepository, corpus: Corpus
) -> None:
    filters = [Filter("size", Op.GTE, 5), Filter("size", Op.LTE, 10),  # v1's size_min/max
               Filter("status", Op.NEQ, "queued"), Filter("name", Op.IN, ("a", "b"))]
    got = {i.id for i in listing(repo, corpus.tag, filters=filters)}
    assert got == {i.id for i in corpus.listed if 5 <= i.size <= 10 and i.status != "queued"
                   and i.name in ("a", "b")}
    assert listing(repo, corpus.tag, filters=[Filter("status", Op.EQ, "killed")]) == []
    assert listing(repo, corpus.tag, filters=[Filter("status", Op.EQ, "deleted")]) == []
    since = {i.id for i in listing(repo, corpus.tag, changes_since=dt.datetime(2000, 1, 1))}
    assert since == {i.id for i in corpus.images}  # changes-since: deleted and killed too


# -- v2's parts of a list: member status, community images, tags ------------------------------

VISIBLE_SHAPES = [SORT_SHAPES[i] for i in (0, 3, 6, 11)]  # one key, created_at, mixed, none


@pytest.mark.parametrize(("sort", "order"), VISIBLE_SHAPES,
                         ids=[SHAPE_IDS[i] for i in (0, 3, 6, 11)])
@pytest.mark.parametrize("member_status", [*MemberStatus, None], ids=str)
@pytest.mark.parametrize("others_community", [False, True], ids=["own-community", "community"])
def test_visible_pages_by_member_status_and_community(
    repo: SqlImageRepository, corpus: Corpus, sort: list[SortKey], order: list[SortKey],
    member_status: MemberStatus | None, others_community: bool,
) -> None:
    """A tenant's pages with shared images in one member status (or any) and with or without
    other owners' community images: each image once, in order, across the branches."""
    query = ListQuery(scope=Scope.VISIBLE, owner=corpus.me, properties={"tag": corpus.tag},
                      sort=sort, member_status=member_status, others_community=others_community)
    expected = in_order(corpus.visible(member_status, others_community), order)
    assert walk(repo, query, page_size=11) == expected
    kinds = {(i.visibility, i.owner == corpus.me) for i in corpus.visible(member_status,
                                                                           others_community)}
    assert ((Visibility.COMMUNITY, False) in kinds) is others_community
    assert (Visibility.PRIVATE, False) not in kinds  # memberships of private images: none


def test_the_corpus_has_every_kind_of_membership(corpus: Corpus) -> None:
    by_id = {i.id: i for i in corpus.listed}
    kinds = {(by_id[i].visibility, status) for i, status in corpus.memberships.items()
             if i in by_id}
    for status in MemberStatus:
        assert (Visibility.SHARED, status) in kinds
    assert (Visibility.PRIVATE, MemberStatus.ACCEPTED) in kinds


@pytest.mark.parametrize("scope", [Scope.ALL, Scope.NON_PUBLIC])
def test_others_community_images_in_the_admin_scopes(
    repo: SqlImageRepository, corpus: Corpus, scope: Scope
) -> None:
    """None: the scope's own rule (v1: every image); False: community images only of the
    caller's own; True: all of them."""
    def ids(others_community: bool | None, owner: str | None = corpus.me) -> set[str]:
        return {i.id for i in repo.list_images(ListQuery(
            scope=scope, owner=owner, properties={"tag": corpus.tag}, limit=1000,
            others_community=others_community))}

    public_out = {i.id for i in corpus.listed
                  if scope is Scope.NON_PUBLIC and i.visibility is Visibility.PUBLIC}
    everything = {i.id for i in corpus.listed} - public_out
    assert ids(None) == ids(True) == everything
    assert ids(False) == {i.id for i in corpus.all_but_others_community()} - public_out
    assert ids(False, owner=None) == {i.id for i in corpus.listed
                                      if i.visibility is not Visibility.COMMUNITY} - public_out


def test_others_community_images_for_an_anonymous_caller(
    repo: SqlImageRepository, corpus: Corpus
) -> None:
    def ids(others_community: bool | None) -> list[str]:
        return [i.id for i in repo.list_images(ListQuery(
            scope=Scope.VISIBLE, owner=None, properties={"tag": corpus.tag}, limit=1000,
            others_community=others_community))]

    def of(*visibilities: Visibility) -> list[str]:
        return in_order([i for i in corpus.listed if i.visibility in visibilities],
                        [desc("created_at"), desc("id")])

    assert ids(None) == ids(False) == of(Visibility.PUBLIC)
    assert ids(True) == of(Visibility.PUBLIC, Visibility.COMMUNITY)


@pytest.mark.parametrize(("tags", "scope"), [
    (["a"], Scope.ALL), (["b"], Scope.VISIBLE), (["a", "b"], Scope.ALL),
    (["a", "b", "a"], Scope.VISIBLE), (["c"], Scope.ALL), ([], Scope.ALL),
])
def test_tags_are_anded(repo: SqlImageRepository, corpus: Corpus, tags: list[str],
                        scope: Scope) -> None:
    query = ListQuery(scope=scope, owner=corpus.me, properties={"tag": corpus.tag}, tags=tags,
                      sort=[asc("name")])
    candidates = corpus.visible() if scope is Scope.VISIBLE else corpus.listed
    expected = in_order([i for i in candidates if set(tags) <= set(i.tags)],
                        [asc("name"), asc("created_at"), asc("id")])
    assert walk(repo, query, page_size=7) == expected
    assert expected or tags == ["c"]


def test_outside_bounds_timestamps(repo: SqlImageRepository, corpus: Corpus) -> None:
    """v2's neq on a timestamp given to the second: every image but those in that second."""
    stamps = sorted({i.updated_at for i in corpus.listed})
    low = stamps[len(stamps) // 2]
    high = low + dt.timedelta(seconds=1)
    got = {i.id for i in listing(repo, corpus.tag,
                                 filters=[Filter("updated_at", Op.OUTSIDE, (low, high))])}
    assert got == {i.id for i in corpus.listed if not low <= i.updated_at < high}
    assert len(got) < len(corpus.listed)
