"""List queries through the service: what is never listed, filters, property filters, every
sort key in both directions, and keyset paging with markers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.db.tables import SORT_NULLS
from glimpse.domain.data import Upload
from glimpse.domain.fields import SORTABLE
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.model import (
    Image,
    Scope,
    SetFields,
    Status,
    Visibility,
)
from glimpse.errors import Invalid
from tests.service.conftest import (
    ADMIN,
    MEMBER,
    OWNER,
    STRANGER,
    Services,
    build_services,
    make_store,
    new_id,
)


def test_killed_and_deleted_images_are_never_listed(svc: Services) -> None:
    live = svc.create()
    killed = svc.create(data=None)
    with pytest.raises(RuntimeError):
        svc.images.update(OWNER, killed.id, [], upload=Upload(_failing(), None),
                          on_failure=FailureRule.KILL)
    deleted = svc.create()
    svc.images.delete(OWNER, deleted.id)
    assert svc.images.get(ADMIN, killed.id).status is Status.KILLED
    for who, scope in ((OWNER, Scope.VISIBLE), (ADMIN, Scope.ALL), (ADMIN, Scope.NON_PUBLIC)):
        assert svc.listed(who, scope=scope) == [live.id]
    for status in ("killed", "deleted"):
        assert svc.listed(ADMIN, scope=Scope.ALL, filters={"status": status}) == []


def test_pending_delete_images_are_not_listed(build: Any) -> None:
    svc = build(delayed_delete=True)
    image = svc.create()
    svc.images.delete(OWNER, image.id)
    assert svc.listed(ADMIN, scope=Scope.ALL) == []


def test_changes_since_lists_deleted_and_killed_images_too(svc: Services) -> None:
    """v1's changes-since is how a client learns of deletions (spec v1 §9.2)."""
    since = svc.images.get(OWNER, svc.create().id).updated_at
    deleted = svc.create()
    svc.images.delete(OWNER, deleted.id)
    killed = svc.create(data=None)
    with pytest.raises(RuntimeError):
        svc.images.update(OWNER, killed.id, [], upload=Upload(_failing(), None),
                          on_failure=FailureRule.KILL)
    # The image at ``since`` itself is not after it.
    assert set(svc.listed(ADMIN, scope=Scope.ALL, changes_since=since)) == {
        deleted.id, killed.id}
    assert set(svc.listed(OWNER, changes_since=since)) == {deleted.id, killed.id}
    assert svc.listed(STRANGER, changes_since=since) == []
    assert svc.listed(ADMIN, scope=Scope.ALL,
                      changes_since=dt.datetime.now() + dt.timedelta(days=1)) == []


def test_hidden_images_are_listed_unless_filtered(svc: Services) -> None:
    """The current list code does not leave os_hidden images out by default (v1 has no such
    notion; v2's default os_hidden=false is for its query parser to add)."""
    shown, hidden = svc.create(), svc.create(os_hidden=True)
    assert set(svc.listed(OWNER)) == {shown.id, hidden.id}
    assert svc.listed(OWNER, filters={"os_hidden": False}) == [shown.id]
    assert svc.listed(OWNER, filters={"os_hidden": True}) == [hidden.id]
    assert svc.images.get(OWNER, hidden.id).os_hidden


def make_catalog(svc: Services) -> dict[str, Image]:
    """Images that differ in every filterable field, created in this order."""
    made = {
        "a": svc.create(data=b"1", name="alpha", min_ram=1, properties={"os": "linux",
                                                                        "arch": "x86"}),
        "b": svc.create(data=b"22", name="beta", disk_format="qcow2", protected=True,
                        properties={"os": "linux", "arch": "arm"}),
        "c": svc.create(data=None, name="gamma", container_format="ovf", min_disk=5,
                        properties={"os": "bsd"}),
        "d": svc.create(data=b"4444", name=None, disk_format="iso", tags=["t"]),
        "e": svc.create(STRANGER, data=b"55555", name="alpha"),
    }
    svc.images.update(ADMIN, made["e"].id, [SetFields({"visibility": Visibility.PUBLIC})],
                      on_failure=FailureRule.KILL)
    return {k: svc.images.get(ADMIN, v.id) for k, v in made.items()}


Catalog = tuple[Services, dict[str, Image]]


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Catalog]:
    """One catalog for the read-only list tests of this module."""
    directory = tmp_path_factory.mktemp("lists")
    services = build_services(directory, template_db, make_store(directory / "images"))
    yield services, make_catalog(services)
    services.engine.dispose()


FILTERS: list[tuple[dict[str, Any], str]] = [
    ({"name": "alpha"}, "ae"),
    ({"status": "queued"}, "c"),
    ({"status": "active"}, "abde"),
    ({"disk_format": "qcow2"}, "b"),
    ({"container_format": "ovf"}, "c"),
    ({"size": 2}, "b"),
    ({"size_min": 2}, "bde"),
    ({"size_max": 2}, "abc"),  # an unknown size (c is queued) compares as 0, as in v1
    ({"size_min": 2, "size_max": 4}, "bd"),
    ({"min_ram": 1}, "a"),
    ({"min_disk": 5}, "c"),
    ({"protected": True}, "b"),
    ({"owner": "carol"}, "e"),
    ({"visibility": Visibility.PUBLIC}, "e"),
    ({"checksum": "b6d767d2f8ed5d21a44b0e5886680cb9"}, "b"),  # md5(b"22")
    ({"name": "alpha", "owner": "alice"}, "a"),
    ({"name": "nobody"}, ""),
]


@pytest.mark.parametrize(("filters", "expected"), FILTERS, ids=[repr(f) for f, _ in FILTERS])
def test_filters(listing: Catalog, filters: dict[str, Any],
                 expected: str) -> None:
    svc, catalog = listing
    ids = {catalog[k].id: k for k in catalog}
    listed = svc.listed(OWNER, filters=dict(filters))
    assert "".join(sorted(ids[i] for i in listed)) == expected


@pytest.mark.parametrize(("properties", "expected"), [
    ({"os": "linux"}, "ab"),
    ({"os": "linux", "arch": "arm"}, "b"),  # ANDed
    ({"os": "bsd"}, "c"),
    ({"arch": "sparc"}, ""),
    ({"missing": "x"}, ""),
])
def test_property_filters(listing: Catalog, properties: dict[str, str],
                          expected: str) -> None:
    svc, catalog = listing
    ids = {catalog[k].id: k for k in catalog}
    listed = svc.listed(OWNER, properties=properties)
    assert "".join(sorted(ids[i] for i in listed)) == expected


def test_filters_apply_within_the_callers_scope(listing: Catalog) -> None:
    svc, catalog = listing
    assert svc.listed(MEMBER, filters={"name": "alpha"}) == [catalog["e"].id]
    assert svc.listed(MEMBER, filters={"owner": "alice"}) == []


def _order_key(image: Image, key: str) -> tuple[Any, ...]:
    value = getattr(image, key)
    value = SORT_NULLS.get(key) if value is None else value
    return (str(value) if isinstance(value, Status) else value, image.created_at, image.id)


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", SORTABLE)
def test_sort_keys(listing: Catalog, key: str, direction: str) -> None:
    """The key, then created_at and id as tie-breakers, all in the one direction; a null key
    sorts as an empty string or 0."""
    svc, catalog = listing
    visible = [catalog[k] for k in "abcde"]
    expected = [i.id for i in sorted(visible, key=lambda i: _order_key(i, key),
                                     reverse=direction == "desc")]
    assert svc.listed(OWNER, sort_key=key, sort_dir=direction) == expected


def test_default_order_is_newest_first(listing: Catalog) -> None:
    svc, catalog = listing
    assert svc.listed(OWNER) == [catalog[k].id for k in "edcba"]


@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("key", ["name", "size", "created_at", "status", "disk_format"])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_marker_paging_walks_the_whole_list(listing: Catalog,
                                            key: str, direction: str, limit: int) -> None:
    svc, _ = listing
    whole = svc.listed(OWNER, sort_key=key, sort_dir=direction)
    pages: list[list[str]] = []
    marker = None
    while True:
        page = svc.listed(OWNER, sort_key=key, sort_dir=direction, limit=limit, marker=marker)
        assert len(page) <= limit
        if not page:
            break
        pages.append(page)
        marker = page[-1]
    assert [i for p in pages for i in p] == whole
    assert len(whole) == 5


def test_limit(listing: Catalog) -> None:
    svc, catalog = listing
    assert svc.listed(OWNER, limit=2) == [catalog["e"].id, catalog["d"].id]
    assert svc.listed(OWNER, limit=0) == []


def test_marker_must_be_visible(svc: Services) -> None:
    catalog = make_catalog(svc)
    with pytest.raises(Invalid):
        svc.listed(MEMBER, marker=catalog["a"].id)  # alice's, not shared with bob
    with pytest.raises(Invalid):
        svc.listed(OWNER, marker=new_id())
    deleted = catalog["d"]
    svc.images.delete(OWNER, deleted.id)
    with pytest.raises(Invalid):
        svc.listed(OWNER, marker=deleted.id)
    # The admin sees deleted images, so one may mark its place.
    assert svc.listed(ADMIN, scope=Scope.ALL, marker=deleted.id) == [
        catalog[k].id for k in "cba"]


def _failing() -> Any:
    yield b"x"
    raise RuntimeError("gone")
