"""Multi-store in process: downloads choosing among an image's copies by store weight and
falling back when a store fails before its first byte, removing one store's copy
(StoreService.remove_copy) with its rules and its failure path, and the store list."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from glimpse.db import engine as db_engine
from glimpse.db.repository import SqlImageRepository
from glimpse.domain.audit import StoreAudit
from glimpse.domain.data import ImageData
from glimpse.domain.images import ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.limits import Limits
from glimpse.domain.model import (
    Changes,
    Image,
    ImageInput,
    Location,
    LocationStatus,
    Status,
)
from glimpse.domain.store_choice import StoreCatalog, StoreInfo
from glimpse.domain.store_service import StoreService
from glimpse.errors import Conflict, Forbidden, NotFound, Unavailable
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS
from glimpse.stores.http import HttpSource
from glimpse.stores.memory import MemoryStore
from tests.service.conftest import ADMIN, FORMATS, OWNER, STRANGER, InlineExecutor, read, upload

DATA = b"0123456789" * 1000


class FlakyStore(MemoryStore):
    """A memory store that can be made to fail: at ``open`` (unreachable), on the first read,
    after the first chunk (mid-stream), or on delete; it counts the opens."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.fail_open = False
        self.fail_first_read = False
        self.fail_after_first = False
        self.fail_delete = False
        self.opens = 0

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        self.opens += 1
        if self.fail_open:
            raise Unavailable(f"Store {self.name} is unreachable")
        chunks = super().open(key, offset, length)
        return self._flaky(chunks)

    def _flaky(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        if self.fail_first_read:
            raise Unavailable(f"Store {self.name} cut the connection")
        for n, chunk in enumerate(_small(chunks)):
            if n and self.fail_after_first:
                raise Unavailable(f"Store {self.name} cut the connection mid-object")
            yield chunk

    def delete(self, key: str) -> None:
        if self.fail_delete:
            raise Unavailable(f"Store {self.name} is unreachable")
        super().delete(key)


def _small(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        for start in range(0, len(chunk), 1000):
            yield chunk[start:start + 1000]


@dataclasses.dataclass
class World:
    repo: SqlImageRepository
    stores: dict[str, FlakyStore]
    data: ImageData
    images: ImageService
    service: StoreService

    def image_in(self, *names: str, data: bytes = DATA) -> Image:
        """An active image of OWNER's, uploaded into the first store and copied into the
        others (as copy-image would: same key, a location each)."""
        image = self.images.create(
            OWNER, ImageInput(fields=dict(FORMATS)), None, FailureRule.REQUEUE)
        image = self.images.update(OWNER, image.id, [], upload=upload(data, 4096),
                                   source=_source(names[0]), on_failure=FailureRule.REQUEUE)
        for name in names[1:]:
            self.stores[name].put(image.id, [data])
            updated = self.repo.update(image.id, Changes(),
                                       add_locations=[Location(name, image.id)])
            assert updated is not None
            image = updated
        return image


def _source(store: str) -> Any:
    from glimpse.domain.model import DataSource
    return DataSource(store=store)


@pytest.fixture
def world(tmp_path: Path, template_db: Path) -> Iterator[World]:
    yield from _world(tmp_path, template_db, multi_store=True)


def _world(tmp_path: Path, template_db: Path, multi_store: bool) -> Iterator[World]:
    path = tmp_path / f"db-{uuid.uuid4().hex}.sqlite"
    shutil.copyfile(template_db, path)
    engine = db_engine.create_engine(f"sqlite:///{path}")
    repo = SqlImageRepository(engine)
    stores = {name: FlakyStore(name) for name in ("fast", "slow", "cheap")}
    catalog = StoreCatalog((StoreInfo("fast", "memory", weight=100),
                            StoreInfo("slow", "memory", weight=10),
                            StoreInfo("cheap", "memory", weight=10),
                            StoreInfo("http", "http", read_only=True)),
                           default="slow", multi_store=multi_store)
    limits = Limits(disk_formats=DEFAULT_DISK_FORMATS, container_formats=DEFAULT_CONTAINER_FORMATS)
    data = ImageData(repo, dict(stores), "slow", HttpSource(allowed_networks=()), limits,
                     background=InlineExecutor(), catalog=catalog)
    images = ImageService(repo, data, limits, admins_read_deactivated=True, hide_deleted=True)
    yield World(repo, stores, data, images, StoreService(repo, images, data, catalog))
    engine.dispose()


def _locations(world: World, image_id: str) -> list[tuple[str, str]]:
    image = world.repo.get(image_id)
    assert image is not None
    return [(loc.store, str(loc.status)) for loc in image.locations]


# -- downloads --------------------------------------------------------------------------------


def test_download_reads_the_copy_of_highest_weight(world: World) -> None:
    image = world.image_in("slow", "fast")
    assert read(world.images.open_data(OWNER, image.id)) == DATA
    assert (world.stores["fast"].opens, world.stores["slow"].opens) == (1, 0)


@pytest.mark.parametrize("fault", ["fail_open", "fail_first_read", "missing", "empty"])
def test_download_falls_back_when_a_store_fails_before_its_first_byte(
        world: World, fault: str) -> None:
    image = world.image_in("slow", "fast")
    fast = world.stores["fast"]
    if fault == "missing":
        fast.delete(image.id)  # the data is gone from the store of highest weight
    elif fault == "empty":
        fast.put(image.id, [])  # an object that returns no byte of the data
    else:
        setattr(fast, fault, True)
    assert read(world.images.open_data(OWNER, image.id)) == DATA
    assert world.stores["slow"].opens == 1


def test_fallback_serves_ranges_at_their_offset(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].fail_open = True
    download = world.images.open_data(OWNER, image.id, 4321, 100)
    assert read(download) == DATA[4321:4421]


def test_every_copy_failing_raises_the_first_stores_error(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].fail_open = True
    world.stores["slow"].fail_first_read = True
    with pytest.raises(Unavailable, match="fast is unreachable"):
        world.images.open_data(OWNER, image.id)


def test_a_failure_after_the_first_byte_is_not_papered_over(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].fail_after_first = True
    download = world.images.open_data(OWNER, image.id)
    assert download.chunks is not None
    assert next(download.chunks) == DATA[:1000]
    with pytest.raises(Unavailable, match="mid-object"):
        b"".join(download.chunks)
    assert world.stores["slow"].opens == 0


def test_equal_weights_keep_the_images_order(world: World) -> None:
    image = world.image_in("cheap", "slow")
    read(world.images.open_data(OWNER, image.id))
    assert (world.stores["cheap"].opens, world.stores["slow"].opens) == (1, 0)


def test_a_copy_being_deleted_is_never_read(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].fail_delete = True
    world.service.remove_copy(ADMIN, "fast", image.id)
    read(world.images.open_data(OWNER, image.id))
    assert (world.stores["fast"].opens, world.stores["slow"].opens) == (0, 1)


# -- the stores attribute ---------------------------------------------------------------------


def test_image_stores_by_weight_then_name(world: World) -> None:
    image = world.image_in("slow", "cheap", "fast")
    assert world.service.catalog.image_stores(image) == ["fast", "cheap", "slow"]
    gone = dataclasses.replace(image, locations=[
        dataclasses.replace(loc, status=LocationStatus.PENDING_DELETE)
        if loc.store == "fast" else loc for loc in image.locations])
    assert world.service.catalog.image_stores(gone) == ["cheap", "slow"]


def test_unconfigured_store_is_read_last(world: World) -> None:
    catalog = world.service.catalog
    order = catalog.reading_order([Location("gone", "k"), Location("slow", "k"),
                                   Location("fast", "k")])
    assert [loc.store for loc in order] == ["fast", "slow", "gone"]


def test_catalog_refuses_long_and_unknown_ids(world: World) -> None:
    catalog = world.service.catalog
    assert catalog.get("fast") is not None
    assert catalog.get("x" * 100_000) is None
    assert catalog.get("../fast") is None
    with pytest.raises(ValueError):
        StoreCatalog((StoreInfo("a", "file"), StoreInfo("a", "file")), default="a")
    with pytest.raises(ValueError):
        StoreCatalog((StoreInfo("a", "file"),), default="b")


# -- removing a store's copy ------------------------------------------------------------------


def test_remove_copy_deletes_the_bytes_and_the_location(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.service.remove_copy(ADMIN, "fast", image.id)
    assert _locations(world, image.id) == [("slow", "active")]
    assert list(world.stores["fast"].object_keys()) == []
    assert list(world.stores["slow"].object_keys()) == [image.id]
    assert read(world.images.open_data(OWNER, image.id)) == DATA


def test_remove_copy_refusals_follow_glances_order(world: World, tmp_path: Path,
                                                   template_db: Path) -> None:
    image = world.image_in("slow", "fast")
    remove = world.service.remove_copy
    with pytest.raises(Conflict, match="not available"):
        remove(ADMIN, "nowhere", image.id)
    with pytest.raises(Conflict) as long_id:
        remove(ADMIN, "x" * 10_000, image.id)
    assert len(long_id.value.message) < 200
    with pytest.raises(NotFound):
        remove(ADMIN, "fast", str(uuid.uuid4()))
    with pytest.raises(NotFound):
        remove(ADMIN, "fast", "../../etc/passwd")
    with pytest.raises(NotFound):  # private to OWNER: a stranger does not see it
        remove(STRANGER, "fast", image.id)
    with pytest.raises(Forbidden):  # delete_image_location: admins only
        remove(OWNER, "fast", image.id)
    with pytest.raises(NotFound, match="not stored in store cheap"):
        remove(ADMIN, "cheap", image.id)
    world.images.deactivate(OWNER, image.id)
    with pytest.raises(Conflict, match="not 'active'"):
        remove(ADMIN, "fast", image.id)
    world.images.reactivate(OWNER, image.id)
    remove(ADMIN, "fast", image.id)
    with pytest.raises(Forbidden, match="only store"):
        remove(ADMIN, "slow", image.id)
    assert _locations(world, image.id) == [("slow", "active")]
    queued = world.images.create(OWNER, ImageInput(fields=dict(FORMATS)), None,
                                 FailureRule.REQUEUE)
    with pytest.raises(Conflict, match="not 'active'"):
        remove(ADMIN, "slow", queued.id)


def test_remove_copy_needs_multi_store(tmp_path: Path, template_db: Path) -> None:
    for world in _world(tmp_path, template_db, multi_store=False):
        image = world.image_in("slow", "fast")
        with pytest.raises(NotFound, match="Multi backend"):
            world.service.remove_copy(ADMIN, "fast", image.id)
        with pytest.raises(NotFound, match="Multi backend"):
            world.service.list_stores(ADMIN)


def test_a_store_that_fails_to_delete_leaves_a_recorded_leftover(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].fail_delete = True
    world.service.remove_copy(ADMIN, "fast", image.id)
    # Gone for every reader at once; the bytes are still recorded, to be deleted later.
    assert _locations(world, image.id) == [("slow", "active"), ("fast", "pending_delete")]
    shown = world.images.get(OWNER, image.id)
    assert world.service.catalog.image_stores(shown) == ["slow"]
    assert list(world.stores["fast"].object_keys()) == [image.id]
    assert world.data.purge_leftovers() == 0  # the store still fails
    world.stores["fast"].fail_delete = False
    assert world.data.purge_leftovers() == 1
    assert _locations(world, image.id) == [("slow", "active")]
    assert list(world.stores["fast"].object_keys()) == []
    # The purge took only the copy being deleted: the image's data is intact.
    assert list(world.stores["slow"].object_keys()) == [image.id]
    assert world.images.get(OWNER, image.id).status is Status.ACTIVE
    # The copy can no longer be removed twice, nor the last one at all.
    with pytest.raises(Forbidden):
        world.service.remove_copy(ADMIN, "slow", image.id)


def test_two_removals_never_take_the_last_copy(world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    image = world.image_in("slow", "fast")
    stale = world.images.get(ADMIN, image.id)  # both copies, as a concurrent remover read it
    world.service.remove_copy(ADMIN, "fast", image.id)
    monkeypatch.setattr(world.images, "get", lambda principal, image_id: stale)
    with pytest.raises(Conflict, match="kept changing"):
        world.service.remove_copy(ADMIN, "slow", image.id)
    assert _locations(world, image.id) == [("slow", "active")]
    assert list(world.stores["slow"].object_keys()) == [image.id]


def test_remove_an_external_copy_deletes_no_bytes(world: World) -> None:
    image = world.image_in("slow")
    updated = world.repo.update(image.id, Changes(), add_locations=[
        Location("http", "https://example.com/image.raw")])
    assert updated is not None
    world.service.remove_copy(ADMIN, "http", image.id)
    assert _locations(world, image.id) == [("slow", "active")]
    assert list(world.stores["slow"].object_keys()) == [image.id]


def test_list_stores_detail_is_for_admins_and_services(world: World) -> None:
    assert [s.id for s in world.service.list_stores(OWNER)] == ["fast", "slow", "cheap", "http"]
    with pytest.raises(Forbidden):
        world.service.list_stores(OWNER, detail=True)
    service = dataclasses.replace(OWNER, roles=("service",), is_admin=False)
    assert len(world.service.list_stores(service, detail=True)) == 4
    assert len(world.service.list_stores(ADMIN, detail=True)) == 4


# -- store check over several copies ------------------------------------------------------------


def _audit(world: World) -> StoreAudit:
    return StoreAudit(world.repo, dict(world.stores))


@pytest.mark.parametrize("verify", [False, True])
def test_store_check_repair_drops_only_the_bad_copy(world: World, verify: bool) -> None:
    image = world.image_in("slow", "fast")
    if verify:
        world.stores["fast"].put(image.id, [DATA[:-1] + b"X"])  # same size, other bytes
    else:
        world.stores["fast"].delete(image.id)
    report = _audit(world).check(verify=verify, repair=True)
    assert (report.corrupt if verify else report.missing) == [image.id]
    assert report.repaired == 1
    assert world.repo.get(image.id).status is Status.ACTIVE  # type: ignore[union-attr]
    assert _locations(world, image.id) == [("slow", "active")]
    assert read(world.images.open_data(OWNER, image.id)) == DATA
    assert _audit(world).check(verify=True).clean


def test_store_check_kills_an_image_only_when_every_copy_is_bad(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].delete(image.id)
    world.stores["slow"].put(image.id, [b"short"])
    report = _audit(world).check(repair=True)
    # Reported once, under its first copy's problem.
    assert (report.corrupt, report.missing, report.repaired) == ([image.id], [], 1)
    assert world.repo.get(image.id).status is Status.KILLED  # type: ignore[union-attr]
    assert _locations(world, image.id) == []
    with pytest.raises(NotFound):
        world.stores["slow"].size(image.id)


def test_store_check_without_repair_changes_nothing(world: World) -> None:
    image = world.image_in("slow", "fast")
    world.stores["fast"].delete(image.id)
    assert _audit(world).check().missing == [image.id]
    assert _locations(world, image.id) == [("slow", "active"), ("fast", "active")]
