"""v2's multi-store endpoints and keys (spec §2.1, §2.2, §3; Glance's discovery.py and
images.py): ``/v2/info/stores`` and its ``detail``, ``DELETE /v2/stores/{store}/{image}``, the
``stores`` image attribute and the ``OpenStack-image-store-ids`` header of a create."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from glimpse.api.http import Header, empty_response, in_thread, json_response
from glimpse.domain.model import Image, Status
from glimpse.domain.store_choice import StoreCatalog, StoreInfo
from glimpse.domain.store_service import StoreService

if TYPE_CHECKING:
    from glimpse.api.v2.handlers import Call

# Statuses whose locations hold complete data: the ones ``stores`` names (a saving image's
# claimed object is not a copy yet).
_HOLDS_DATA = (Status.ACTIVE, Status.DEACTIVATED)


class StoreHandlers:
    def __init__(self, service: StoreService) -> None:
        self.service = service
        self.catalog = service.catalog

    async def info(self, call: Call) -> Response:
        call.refuse_body()
        stores = self.service.list_stores(call.principal)
        return json_response({"stores": [self._entry(store) for store in stores]})

    async def detail(self, call: Call) -> Response:
        call.refuse_body()
        stores = self.service.list_stores(call.principal, detail=True)
        return json_response({"stores": [
            {**self._entry(store), "type": store.type, "properties": dict(store.properties),
             "weight": store.weight}
            for store in stores]})

    async def delete_copy(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.service.remove_copy, call.principal, call.params["store_id"],
                        call.params["image_id"])
        return empty_response(204)

    def _entry(self, store: StoreInfo) -> dict[str, Any]:
        """Glance's entry: the id; the description, "default" and "read-only" only when they
        say something, each the string "true"."""
        entry: dict[str, Any] = {"id": store.id}
        if store.description:
            entry["description"] = store.description
        if store.id == self.catalog.default:
            entry["default"] = "true"
        if store.read_only:
            entry["read-only"] = "true"
        return entry


def add_stores_key(document: dict[str, Any], image: Image, catalog: StoreCatalog) -> None:
    """With multi-store, the stores holding the image's data, comma-joined (none: no key, as
    Glance)."""
    if not catalog.multi_store or image.status not in _HOLDS_DATA:
        return
    held = catalog.image_stores(image)
    if held:
        document["stores"] = ",".join(held)


def store_ids_header(catalog: StoreCatalog) -> list[Header]:
    """``OpenStack-image-store-ids`` for a create's answer, with multi-store: every store."""
    if not catalog.multi_store:
        return []
    return [(b"openstack-image-store-ids", ",".join(catalog.ids).encode())]
