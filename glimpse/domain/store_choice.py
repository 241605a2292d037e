"""The deployment's stores as the API shows them and as downloads choose among them: which
stores there are (Glance's multi-store discovery, ``/v2/info/stores``), which one is the
default, and in which order an image's copies are read (by store weight, highest first).

The catalog is plain data, built from the settings by ``glimpse.stores.catalog`` (app.py): the
domain never looks at a store's configuration itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from glimpse.domain.model import Image, Location, LocationStatus

# The longest store id a request may name that the catalog compares at all: longer ones are
# unknown without being looked at (configured names have at most 64 characters).
MAX_STORE_ID = 255


@dataclasses.dataclass(frozen=True)
class StoreInfo:
    """One store: its id (the name in the settings), Glance's name of its kind (``file``,
    ``swift``, ``s3``, ``rbd``, ``http``; ``memory`` is glimpse's own), the operator's
    description, its weight, whether it is only read (the external ``http`` source), and
    what ``/v2/info/stores/detail`` shows of its configuration (never a credential)."""

    id: str
    type: str
    description: str = ""
    weight: int = 0
    read_only: bool = False
    properties: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))


@dataclasses.dataclass(frozen=True)
class StoreCatalog:
    """Every store of the deployment, in the configuration's order, the default one, and
    whether the operator turned multi-store on (``multi_store``: Glance's enabled_backends).
    Weights order reads whether or not multi-store is on: they only matter to images with
    more than one copy."""

    stores: tuple[StoreInfo, ...]
    default: str
    multi_store: bool = False

    def __post_init__(self) -> None:
        ids = [store.id for store in self.stores]
        if len(set(ids)) != len(ids):
            raise ValueError("store ids must be unique")
        if self.stores and self.default not in ids:
            raise ValueError(f"default store {self.default!r} is not in the catalog")

    @property
    def ids(self) -> list[str]:
        return [store.id for store in self.stores]

    def get(self, store_id: str) -> StoreInfo | None:
        """The store of that id; None for any other text (never compared past MAX_STORE_ID)."""
        if len(store_id) > MAX_STORE_ID:
            return None
        return next((store for store in self.stores if store.id == store_id), None)

    def weight(self, store_id: str) -> int | None:
        """The store's weight; None when it is not configured (any more)."""
        found = self.get(store_id)
        return None if found is None else found.weight

    def reading_order(self, locations: Iterable[Location]) -> list[Location]:
        """The locations a download may read, in the order to try them: active ones only, by
        their store's weight, highest first; equal weights keep the image's order; a store
        that is no longer configured comes last (reading it fails, and the next is tried)."""
        active = [loc for loc in locations if loc.status is LocationStatus.ACTIVE]
        return sorted(active, key=self._reading_key)

    def _reading_key(self, location: Location) -> tuple[int, int]:
        weight = self.weight(location.store)
        return (1, 0) if weight is None else (0, -weight)

    def image_stores(self, image: Image) -> list[str]:
        """The stores holding a complete copy of the image's data, each once: by weight,
        highest first, then by id (the ``stores`` attribute; Tempest's waiters compare it with
        the sorted list of the stores they imported to, and its weight test with the weight
        order)."""
        held = {loc.store for loc in image.locations if loc.status is LocationStatus.ACTIVE}
        return sorted(held, key=lambda store_id: (-(self.weight(store_id) or 0), store_id))

    def writable(self) -> Sequence[StoreInfo]:
        return [store for store in self.stores if not store.read_only]
