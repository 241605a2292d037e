"""The named stores of a deployment, built from settings.

Drivers are imported only when a store uses them, so python-swiftclient and boto3 stay optional
(the ``swift`` and ``s3`` extras).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from glimpse.domain.ports import Store
from glimpse.errors import Invalid
from glimpse.settings import Settings, StoreConfig

# driver name -> (module, factory function, the extra that installs its SDK)
_DRIVERS = {
    "filesystem": ("glimpse.stores.filesystem", "from_config", ""),
    "swift": ("glimpse.stores.swift", "from_config", "swift"),
    "s3": ("glimpse.stores.s3", "from_config", "s3"),
}


def build_store(config: StoreConfig, data_dir: Path) -> Store:
    module_name, factory, extra = _DRIVERS[config.driver]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Invalid(
            f"Store {config.name!r} needs the {config.driver} driver's library "
            f"({exc.name}); install glimpse[{extra}]"
        ) from exc
    store: Store = getattr(module, factory)(config, data_dir)
    return store


def build_stores(settings: Settings) -> dict[str, Store]:
    """The built-in ``file`` store (unless a configured store takes that name) and every
    configured store, by name."""
    default_file = StoreConfig("file", "filesystem", {"directory": str(settings.images_dir)})
    configs = {"file": default_file, **{c.name: c for c in settings.stores}}
    return {name: build_store(c, settings.data_dir) for name, c in configs.items()}
