"""The named stores of a deployment: the drivers there are, the store names with a meaning of
their own, and building the configured stores from settings.

Drivers are imported only when a store uses them, so python-swiftclient and boto3 stay optional
(the ``swift`` and ``s3`` extras).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

from glimpse.domain.ports import Store
from glimpse.domain.store_choice import StoreCatalog, StoreInfo
from glimpse.errors import Invalid
from glimpse.settings import Settings, StoreConfig
from glimpse.stores.catalog import describe
from glimpse.stores.driver import StoreDriver
from glimpse.stores.options import parse_options

# The store that always exists (a filesystem store in data_dir/images) unless a configured
# store takes its name.
BUILT_IN_STORE = "file"
# Other names x-image-meta-store accepts for a store.
STORE_ALIASES = MappingProxyType({"filesystem": BUILT_IN_STORE})
# Pseudo-stores: data at an external URL, never written. An image whose data stays at its
# external location records EXTERNAL_STORE as its store.
READ_ONLY_STORES = ("http", "https")
EXTERNAL_STORE = READ_ONLY_STORES[0]
# Never names of configured stores: they already mean something.
RESERVED_STORE_NAMES = (*READ_ONLY_STORES, *STORE_ALIASES)
_STORE_NAME = re.compile(r"[a-z0-9_-]{1,64}")

# driver name -> (module whose DRIVER is the glimpse.stores.driver.StoreDriver, how to install
# the library it needs, "" for none)
_DRIVERS = {
    "filesystem": ("glimpse.stores.filesystem", ""),
    "memory": ("glimpse.stores.memory", ""),
    "swift": ("glimpse.stores.swift", "install glimpse[swift]"),
    "s3": ("glimpse.stores.s3", "install glimpse[s3]"),
    # Ceph's bindings are not on PyPI: Debian's python3-rados and python3-rbd, linked into the
    # environment (docs/configuration.md, "The RBD store").
    "rbd": ("glimpse.stores.rbd", "install python3-rados and python3-rbd and link them into "
                                  "glimpse's environment (scripts/ceph bindings)"),
}
STORE_DRIVERS = tuple(_DRIVERS)


def canonical_store_name(name: str) -> str:
    """The store an x-image-meta-store value or a default_store setting means."""
    return STORE_ALIASES.get(name, name)


def store_configs(settings: Settings) -> dict[str, StoreConfig]:
    """Every store by name: the built-in one and the configured ones, with their names,
    drivers and ``default_store`` checked (Invalid saying what is wrong)."""
    configs = {BUILT_IN_STORE: StoreConfig(BUILT_IN_STORE, "filesystem")}
    for config in settings.stores:
        _driver_module(config)
        if config.name in RESERVED_STORE_NAMES or not _STORE_NAME.fullmatch(config.name):
            raise Invalid(f"Invalid store name {config.name!r}: lower-case letters, digits, "
                          f"'_' and '-', and not one of {', '.join(RESERVED_STORE_NAMES)}")
        configs[config.name] = config
    if canonical_store_name(settings.default_store) not in configs:
        raise Invalid(f"Unknown default_store {settings.default_store!r}")
    return configs


def check_stores(settings: Settings) -> None:
    """Refuse (Invalid) whatever ``build_stores`` would refuse, without making a store: names,
    drivers, a driver's missing library, unknown, missing and malformed options. Run at
    start-up, so a bad store table is a configuration error before anything starts."""
    for config in store_configs(settings).values():
        _parse(config)


def build_stores(settings: Settings) -> dict[str, Store]:
    return {name: build_store(config, settings.data_dir)
            for name, config in store_configs(settings).items()}


def build_store(config: StoreConfig, data_dir: Path) -> Store:
    driver, options = _parse(config)
    return driver.create(config.name, options, data_dir)


def build_catalog(settings: Settings) -> StoreCatalog:
    """Every store in this order (the built-in ``file`` first, then the configured ones),
    then the external ``http`` source, read-only, as Glance lists an http store: what the
    API shows of them (glimpse.stores.catalog) and their weights."""
    stores = [describe(config.name, config.driver, _parse(config)[1], settings.data_dir,
                       description=config.description, weight=config.weight)
              for config in store_configs(settings).values()]
    stores.append(StoreInfo(EXTERNAL_STORE, "http", read_only=True))
    return StoreCatalog(tuple(stores), canonical_store_name(settings.default_store),
                        multi_store=settings.multi_store)


def _parse(config: StoreConfig) -> tuple[StoreDriver[Any], Any]:
    module_name, hint = _driver_module(config)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise Invalid(
            f"Store {config.name!r} needs the {config.driver} driver's library "
            f"({exc.name}); {hint}"
        ) from exc
    driver: StoreDriver[Any] = module.DRIVER
    return driver, parse_options(driver.options, config.name, config.options)


def _driver_module(config: StoreConfig) -> tuple[str, str]:
    try:
        return _DRIVERS[config.driver]
    except KeyError:
        raise Invalid(f"Store {config.name!r}: unknown driver {config.driver!r} "
                      f"(supported: {', '.join(STORE_DRIVERS)})") from None
