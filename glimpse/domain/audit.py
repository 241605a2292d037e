"""Checking the stores against the database: orphaned objects, missing or damaged data, and the
scrubbing of delayed deletes. Used by the ``glimpse store`` operator commands."""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from glimpse.domain import lifecycle
from glimpse.domain.data import release_data
from glimpse.domain.model import Image, Location, LocationStatus, Status, now
from glimpse.domain.ports import ImageRepository, Store, shared_store
from glimpse.domain.progress import NO_PROGRESS, ProgressObserver
from glimpse.errors import NotFound, Unavailable

log = logging.getLogger(__name__)


@dataclasses.dataclass
class AuditReport:
    stores: list[str] = dataclasses.field(default_factory=list)
    objects: int = 0
    images_checked: int = 0
    orphans: list[str] = dataclasses.field(default_factory=list)  # "store/key"
    missing: list[str] = dataclasses.field(default_factory=list)  # image ids
    corrupt: list[str] = dataclasses.field(default_factory=list)  # image ids
    repaired: int = 0

    @property
    def clean(self) -> bool:
        return not (self.orphans or self.missing or self.corrupt)


class StoreAudit:
    def __init__(self, repo: ImageRepository, stores: dict[str, Store]) -> None:
        self._repo = repo
        self._stores = stores

    def check(self, verify: bool = False, repair: bool = False,
              progress: ProgressObserver = NO_PROGRESS) -> AuditReport:
        """Objects no image references (orphans), active images whose object is gone
        (missing) and, with ``verify``, whose data no longer matches its MD5 (corrupt).
        ``repair`` deletes orphans and kills broken images. ``progress`` is told of each
        object listed, each image checked and each chunk read."""
        report = AuditReport(stores=sorted(self._stores))
        # Killed and deleted images whose data a store could not delete at the time still own
        # it until the leftover purge removes it: that data is not an orphan.
        holders = self._repo.images_holding_data()
        owned = {(loc.store, loc.url) for i in holders for loc in i.locations}
        for name, store in sorted(self._stores.items()):
            # A store's listing has no count up front (Swift, S3 page through it).
            progress.phase(f"listing store {name}", unit="objects")
            for key in store.object_keys():
                report.objects += 1
                progress.advance()
                # A shared store's locations are URLs of its keys (RBD: rbd://...).
                shared = shared_store(store)
                url = shared.location_url(key) if shared is not None else key
                if (name, key) not in owned and (name, url) not in owned:
                    report.orphans.append(f"{name}/{key}")
                    if repair:
                        store.delete(key)
                        report.repaired += 1
        # Every complete copy of a live image is checked: with several stores, one copy may be
        # gone while the others are sound, and only that copy is then dropped.
        checks: list[tuple[Image, list[tuple[Location, Store]]]] = []
        for image in holders:
            if image.status not in (Status.ACTIVE, Status.DEACTIVATED):
                continue
            copies = [(loc, self._stores[loc.store]) for loc in image.locations
                      if loc.status is LocationStatus.ACTIVE and loc.store in self._stores]
            if copies:
                checks.append((image, copies))
        progress.phase("verifying images" if verify else "checking images", len(checks),
                       sum((image.size or 0) * len(copies) for image, copies in checks
                           if image.checksum) if verify else None,
                       unit="images")
        for image, copies in checks:
            report.images_checked += 1
            bad = [(loc, problem) for loc, holder in copies
                   if (problem := self._problem(holder, image, loc.url, verify, progress))]
            progress.advance()
            if not bad:
                continue
            problem = bad[0][1]
            (report.missing if problem == "missing" else report.corrupt).append(image.id)
            if not repair:
                continue
            # A copy this command cannot judge (an external URL, a store not configured here)
            # may be sound: the image lives on with it.
            complete = [loc for loc in image.locations if loc.status is LocationStatus.ACTIVE]
            sound = len(complete) - len(bad)
            if sound > 0:
                for location, problem in bad:
                    self._release(image, location)
                    log.warning("image %s: data in store %s %s; that copy dropped, %d left",
                                image.id, location.store, problem, sound)
                report.repaired += 1
            elif self._repo.set_fields(
                image.id,
                {"status": lifecycle.check_transition(image.status, Status.KILLED),
                 "updated_at": now()},
                expected_status=image.status,
            ):
                # Damaged data must not linger as an orphan.
                for held in image.locations:
                    self._release(image, held)
                log.warning("image %s: data %s; marked killed", image.id, problem)
                report.repaired += 1
        return report

    def _release(self, image: Image, location: Location) -> None:
        """Delete the data and forget where it was, so the leftover purge does not delete it
        again; an operator command stops at a store that fails."""
        if not release_data(self._repo, self._stores, image.id, location):
            raise Unavailable(f"Store {location.store} could not delete the data of image "
                              f"{image.id}; run the command again once it is back")

    @staticmethod
    def _problem(store: Store, image: Image, key: str, verify: bool,
                 progress: ProgressObserver) -> str | None:
        try:
            size = store.size(key)
        except NotFound:
            return "missing"
        if size != (image.size or 0):
            return "corrupt"
        if verify and image.checksum:
            digest = hashlib.md5(usedforsecurity=False)
            for chunk in store.open(key):
                digest.update(chunk)
                progress.advance(0, len(chunk))
            if digest.hexdigest() != image.checksum:
                return "corrupt"
        return None

    def scrub(self, progress: ProgressObserver = NO_PROGRESS) -> list[str]:
        """Finish delayed deletes: remove the data of ``pending_delete`` images and mark them
        ``deleted``. ``progress`` is told of each image done, and its size."""
        done = []
        pending = self._repo.images_holding_data([str(Status.PENDING_DELETE)])
        progress.phase("scrubbing images", len(pending),
                       sum(image.size or 0 for image in pending), unit="images")
        for image in pending:
            for location in image.locations:
                self._release(image, location)
            target = lifecycle.check_transition(Status.PENDING_DELETE, Status.DELETED)
            if self._repo.set_fields(image.id, {"status": target, "updated_at": now()},
                                     expected_status=Status.PENDING_DELETE):
                done.append(image.id)
            progress.advance(1, image.size or 0)
        return done

