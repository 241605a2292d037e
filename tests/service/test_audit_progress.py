"""The store audit and scrub tell a progress observer how far they have got, from their own
iteration: the objects as listed, the images as checked, each chunk as read."""

from __future__ import annotations

from typing import Any

from glimpse.domain.model import Status
from tests.service.conftest import ADMIN, OWNER, ServiceFactory, Services, new_id


class Recorder:
    """Keeps every call, as (phase label, totals, unit) and the advances within it."""

    def __init__(self) -> None:
        self.phases: list[dict[str, Any]] = []

    def phase(self, label: str, total_items: int | None = None,
              total_bytes: int | None = None, unit: str = "items") -> None:
        self.phases.append({"label": label, "items": total_items, "bytes": total_bytes,
                            "unit": unit, "advances": []})

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        self.phases[-1]["advances"].append((items, nbytes))

    def done(self, label: str) -> tuple[int, int]:
        [phase] = [p for p in self.phases if p["label"] == label]
        advances = phase["advances"]
        return sum(a[0] for a in advances), sum(a[1] for a in advances)


def test_check_reports_listing_then_images(svc: Services) -> None:
    images = [svc.create(data=bytes([i]) * (1000 * (i + 1))) for i in range(3)]
    svc.store.put(new_id(), [b"orphan"])
    svc.create(data=None)  # queued: no data, not checked
    seen = Recorder()
    report = svc.audit.check(progress=seen)
    assert [p["label"] for p in seen.phases] == [f"listing store {svc.store.name}",
                                                 "checking images"]
    listing, checking = seen.phases
    assert (listing["items"], listing["bytes"], listing["unit"]) == (None, None, "objects")
    assert seen.done(listing["label"]) == (report.objects, 0) == (4, 0)
    # Without --verify nothing is read: a count, no bytes to expect.
    assert (checking["items"], checking["bytes"], checking["unit"]) == (3, None, "images")
    assert seen.done("checking images") == (3, 0)
    assert report.images_checked == len(images)


def test_verify_reports_every_byte_read(svc: Services) -> None:
    sizes = [5000, 1, 70000]
    for size in sizes:
        svc.create(data=b"v" * size)
    seen = Recorder()
    assert svc.audit.check(verify=True, progress=seen).clean
    [verifying] = [p for p in seen.phases if p["label"] == "verifying images"]
    assert (verifying["items"], verifying["bytes"]) == (3, sum(sizes))
    assert seen.done("verifying images") == (3, sum(sizes))
    # Bytes count as they are read, before their image is done.
    assert any(items == 0 and nbytes > 0 for items, nbytes in verifying["advances"])


def test_scrub_reports_each_image_and_its_size(build: ServiceFactory) -> None:
    svc = build(delayed_delete=True)
    doomed = [svc.create(data=b"s" * size) for size in (10, 20, 30)]
    for image in doomed:
        svc.images.delete(OWNER, image.id)
    seen = Recorder()
    assert sorted(svc.audit.scrub(progress=seen)) == sorted(i.id for i in doomed)
    assert [(p["label"], p["items"], p["bytes"]) for p in seen.phases] == [
        ("scrubbing images", 3, 60)]
    assert seen.done("scrubbing images") == (3, 60)
    assert all(svc.images.get(ADMIN, i.id).status is Status.DELETED for i in doomed)
