"""A configured store as the domain's StoreCatalog sees it: its id, Glance's kind, its
description and weight, and the properties ``/v2/info/stores/detail`` shows, in Glance's
names for each kind (glance/api/v2/discovery.py). Only sizes, names and flags are shown:
never a credential, an endpoint, a keyring or a configuration file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from glimpse.domain.store_choice import StoreInfo

# glimpse's read block, the chunk size of every driver's reads.
READ_CHUNK = 1 << 20
# Glance's name of each driver's kind of store.
_TYPES = {"filesystem": "file"}


def describe(name: str, driver: str, options: Any, data_dir: Path, *, description: str = "",
             weight: int = 0) -> StoreInfo:
    """A configured store as the catalog holds it; ``options``: its driver's parsed
    options (the registry's ``build_catalog`` builds the catalog with this)."""
    properties = _PROPERTIES.get(driver, _none)(options, data_dir)
    return StoreInfo(name, _TYPES.get(driver, driver), description=description,
                     weight=weight, properties=properties)


def _none(options: Any, data_dir: Path) -> dict[str, Any]:
    return {}


def _file(options: Any, data_dir: Path) -> dict[str, Any]:
    return {"data_dir": str((data_dir / options.directory).resolve()),
            "chunk_size": READ_CHUNK, "thin_provisioning": False}


def _swift(options: Any, data_dir: Path) -> dict[str, Any]:
    # Every image is a static large object of segment_size segments: "large" from byte 0.
    return {"container": options.container, "large_object_size": 0,
            "large_object_chunk_size": options.segment_size}


def _s3(options: Any, data_dir: Path) -> dict[str, Any]:
    # Every upload is multipart, its parts from part_size up, upload_concurrency in flight.
    return {"s3_store_large_object_size": 0,
            "s3_store_large_object_chunk_size": options.part_size,
            "s3_store_thread_pools": options.upload_concurrency}


def _rbd(options: Any, data_dir: Path) -> dict[str, Any]:
    return {"chunk_size": options.chunk_size, "pool": options.pool,
            "thin_provisioning": options.skip_zeros}


_PROPERTIES: dict[str, Callable[[Any, Path], dict[str, Any]]] = {
    "filesystem": _file, "swift": _swift, "s3": _s3, "rbd": _rbd,
}
