"""ImageService.open_data with a range: the bytes at an offset, chosen by the caller's rule
once the image is readable (never for an invisible, deactivated or dataless image)."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.api.ranges import RequestedRange
from glimpse.domain.model import Status
from glimpse.domain.ports import Store
from glimpse.errors import Forbidden, Invalid, NotFound, RangeNotSatisfiable
from glimpse.stores.filesystem import FilesystemStore
from glimpse.stores.memory import MemoryStore
from tests.service.conftest import OWNER, STRANGER, Services, read

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Both kinds of download: a stream of chunks (memory), a local file (filesystem)."""
    if request.param == "memory":
        return MemoryStore()
    return FilesystemStore(tmp_path / "images", direct_io=False)


@pytest.mark.parametrize(("offset", "length", "expected"), [
    (0, None, DATA), (0, 1, DATA[:1]), (100, 50, DATA[100:150]), (1000, None, DATA[1000:]),
    (1023, 1, DATA[1023:]), (1000, 5000, DATA[1000:]),
])
def test_a_range_at_an_offset(svc: Services, offset: int, length: int | None,
                              expected: bytes) -> None:
    image = svc.create(data=DATA)
    download = svc.images.open_data(OWNER, image.id, offset, length)
    assert (download.offset, download.length) == (offset, len(expected))
    assert read(download) == expected


def test_offsets_outside_the_data_are_refused(svc: Services) -> None:
    image = svc.create(data=DATA)
    with pytest.raises(RangeNotSatisfiable) as caught:
        svc.images.open_data(OWNER, image.id, 1024)
    assert caught.value.size == 1024
    for offset, length in ((-1, None), (0, 0), (5, -1)):
        with pytest.raises(Invalid):
            svc.images.open_data(OWNER, image.id, offset, length)


def test_the_range_is_chosen_from_the_size(svc: Services) -> None:
    image = svc.create(data=DATA)
    wanted = RequestedRange("bytes=-24", None)
    download = svc.images.open_data(OWNER, image.id, choose=wanted)
    assert wanted.byte_range is not None and wanted.byte_range.content_range() == \
        "bytes 1000-1023/1024"
    assert (download.offset, download.length) == (1000, 24)
    assert read(download) == DATA[1000:]


def test_no_range_is_chosen_before_the_image_is_readable(svc: Services) -> None:
    sizes: list[int] = []

    def choose(size: int) -> tuple[int, int | None]:
        sizes.append(size)
        raise AssertionError("not to be called")

    image = svc.create(data=DATA)
    with pytest.raises(NotFound):
        svc.images.open_data(STRANGER, image.id, choose=choose)
    queued = svc.create(data=None)
    with pytest.raises(NotFound):
        svc.images.open_data(OWNER, queued.id, choose=choose)
    svc.repo.set_fields(image.id, {"status": Status.DEACTIVATED})
    with pytest.raises(Forbidden):
        svc.images.open_data(OWNER, image.id, choose=choose)
    assert sizes == []


def test_empty_data_has_no_range(svc: Services) -> None:
    image = svc.create(data=b"")
    assert read(svc.images.open_data(OWNER, image.id)) == b""
    with pytest.raises(RangeNotSatisfiable):
        svc.images.open_data(OWNER, image.id, choose=RequestedRange("bytes=0-", None))
