"""What a store driver module gives the registry (as its ``DRIVER``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from glimpse.domain.ports import Store

OptionsT = TypeVar("OptionsT")


@dataclasses.dataclass(frozen=True)
class StoreDriver(Generic[OptionsT]):
    """The driver's options dataclass and how to make a store from parsed options.

    The registry parses a store's option table into ``options`` (see glimpse.stores.options),
    so a driver never sees the raw table or the settings. ``create`` takes the store's name,
    its options and the data directory (for paths relative to it)."""

    options: type[OptionsT]
    create: Callable[[str, OptionsT, Path], Store]
