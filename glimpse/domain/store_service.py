"""The stores as a caller sees them (Glance's discovery: ``/v2/info/stores`` and its
``detail``) and removing one store's copy of an image (``DELETE /v2/stores/{store}/{image}``,
Glance's ``delete_from_store``), with their rules in Glance's order.

The data goes as an image delete's does, with no transaction open while the store works:
1. a short transaction marks the copy's location ``pending_delete`` (only if the image is
   still active with exactly the locations read: two removals at once can never take its
   last copy), so no download reads it and the ``stores`` attribute no longer names it;
2. the store deletes the object;
3. a short transaction forgets the location.
When the store fails at step 2, the location stays ``pending_delete`` and the leftover purge
(``ImageData.purge_leftovers``, every ``store_cleanup_interval``) deletes it later: the copy is
gone for every reader at once, and its bytes are never left behind unrecorded.
"""

from __future__ import annotations

import dataclasses

from glimpse.domain.data import ImageData
from glimpse.domain.images import ImageService
from glimpse.domain.model import Changes, Image, Location, LocationStatus, Principal, Status, now
from glimpse.domain.policy import ImageTarget
from glimpse.domain.ports import ImageRepository
from glimpse.domain.store_choice import StoreCatalog, StoreInfo
from glimpse.errors import Conflict, Forbidden, NotFound

# How much of a client's store id an error message repeats.
_SHOWN_ID = 64


class StoreService:
    def __init__(self, repo: ImageRepository, images: ImageService, data: ImageData,
                 catalog: StoreCatalog) -> None:
        self._repo = repo
        self._images = images
        self._data = data
        self.catalog = catalog

    def list_stores(self, principal: Principal, detail: bool = False) -> list[StoreInfo]:
        """The stores a client may name (reserved ones have no place in glimpse); NotFound
        when multi-store is off. ``detail`` (their kinds, weights and properties) is for
        those ``stores_info_detail`` allows (admins and services): Forbidden for others."""
        if not self.catalog.multi_store:
            raise NotFound("Multi backend is not supported at this site.")
        if detail:
            self._images.policy.enforce("stores_info_detail", principal,
                                        {"project_id": principal.owner},
                                        "You are not permitted to see the stores' details.")
        return list(self.catalog.stores)

    def remove_copy(self, principal: Principal, store_id: str, image_id: str) -> None:
        """Delete the image's copy in ``store_id``. NotFound: multi-store is off, the image is
        unknown to the caller, or it has no copy there; Conflict: the store is not one of
        this deployment's, the image is not active, or another service uses the copy (an RBD
        clone); Forbidden: the policy (``get_image_location`` and ``delete_image_location``,
        admins by default) or it is the image's only copy."""
        if not self.catalog.multi_store:
            raise NotFound("Multi backend is not supported at this site.")
        if self.catalog.get(store_id) is None:
            raise Conflict(f"The selected store {_shown(store_id)} is not available on this "
                           "node.")
        policy = self._images.policy
        for _ in range(5):
            image = self._images.get(principal, image_id)
            target = ImageTarget(image, principal.owner)
            policy.enforce("get_image_location", principal, target,
                           "You are not permitted to see this image's locations.")
            policy.enforce("delete_image_location", principal, target,
                           "You are not permitted to delete image locations.")
            if image.status is not Status.ACTIVE:
                raise Conflict("It's not allowed to remove image data from store if image "
                               "status is not 'active'")
            copies = [loc for loc in image.locations if loc.status is LocationStatus.ACTIVE]
            if len(copies) <= 1:
                raise Forbidden("Cannot delete image data from the only store containing it. "
                                "Consider deleting the image instead.")
            doomed = next((loc for loc in copies if loc.store == store_id), None)
            if doomed is None:
                raise NotFound(f"Image {image.id} is not stored in store {store_id}.")
            self._data.check_not_in_use(dataclasses.replace(image, locations=[doomed]))
            if self._mark(image, doomed):
                self._data.release(image.id, dataclasses.replace(
                    doomed, status=LocationStatus.PENDING_DELETE))
                return
            # The image changed between the read and the mark (another removal, a delete, a
            # copy arriving): decide again on what it is now.
        raise Conflict("The image kept changing while its copy was being removed; try again.")

    def _mark(self, image: Image, doomed: Location) -> bool:
        """Step 1: the copy's location becomes pending_delete, if the image is still active
        with the locations read (a compare-and-swap); whether it did."""
        marked = [dataclasses.replace(loc, status=LocationStatus.PENDING_DELETE)
                  if loc is doomed else loc for loc in image.locations]
        try:
            updated = self._repo.update(
                image.id, Changes(fields={"updated_at": now()}, locations=marked,
                                  locations_before=list(image.locations)),
                expected_status=Status.ACTIVE)
        except Conflict:
            return False
        if updated is None:
            return False
        self._data.events.image("image.update", updated)
        return True


def _shown(store_id: str) -> str:
    """A client's store id as a message may repeat it: bounded."""
    return store_id if len(store_id) <= _SHOWN_ID else store_id[:_SHOWN_ID] + "..."
