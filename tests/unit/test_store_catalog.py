"""The store catalog built from settings: the options every store has (description, weight),
Glance's kinds and detail properties, never a credential."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from glimpse import settings
from glimpse.errors import Invalid
from glimpse.stores.registry import build_catalog, build_stores

SECRET = "s3cr3t-never-shown"

TOML = f'''
default_store = "fast"
multi_store = true

[stores.fast]
driver = "filesystem"
directory = "fast"
description = "Fast local disks"
weight = 100

[stores.swift]
driver = "swift"
auth_url = "http://127.0.0.1:1/auth/v1.0"
user = "u:v"
key = "{SECRET}"
container = "images"
segment_size = "200MB"
weight = -5

[stores.s3]
driver = "s3"
bucket = "b"
access_key = "{SECRET}"
secret_key = "{SECRET}"
endpoint_url = "http://user:{SECRET}@127.0.0.1:1"
part_size = "8MB"
'''


def load(tmp_path: Path, toml: str, env: dict[str, str] | None = None) -> settings.Settings:
    config = tmp_path / "glimpse.toml"
    config.write_text(toml)
    return settings.load(config, environ={"GLIMPSE_DATA_DIR": str(tmp_path), **(env or {})})


def test_catalog_shows_kinds_descriptions_weights_and_properties(tmp_path: Path) -> None:
    catalog = build_catalog(load(tmp_path, TOML))
    assert catalog.multi_store and catalog.default == "fast"
    assert catalog.ids == ["file", "fast", "swift", "s3", "http"]
    by_id = {store.id: store for store in catalog.stores}
    fast = by_id["fast"]
    assert (fast.type, fast.description, fast.weight, fast.read_only) == (
        "file", "Fast local disks", 100, False)
    assert fast.properties == {"data_dir": str((tmp_path / "fast").resolve()),
                               "chunk_size": 1 << 20, "thin_provisioning": False}
    assert by_id["swift"].weight == -5
    assert by_id["swift"].properties == {"container": "images", "large_object_size": 0,
                                         "large_object_chunk_size": 200 << 20}
    assert by_id["s3"].properties == {"s3_store_large_object_size": 0,
                                      "s3_store_large_object_chunk_size": 8 << 20,
                                      "s3_store_thread_pools": 3}
    assert by_id["http"].read_only and by_id["http"].type == "http"
    assert (by_id["file"].type, by_id["file"].weight) == ("file", 0)
    shown = json.dumps([dict(s.properties) for s in catalog.stores]) + repr(catalog)
    assert SECRET not in shown and "127.0.0.1:1" not in shown


def test_common_options_do_not_reach_the_driver(tmp_path: Path) -> None:
    stores = build_stores(load(tmp_path, TOML))
    assert set(stores) == {"file", "fast", "swift", "s3"}


def test_settings_round_trip_keeps_description_and_weight(tmp_path: Path) -> None:
    loaded = load(tmp_path, TOML)
    again = settings.from_json(settings.to_json(loaded))
    assert again.stores == loaded.stores and again.multi_store
    fast = next(c for c in again.stores if c.name == "fast")
    assert (fast.description, fast.weight, dict(fast.options)) == (
        "Fast local disks", 100, {"directory": "fast"})


def test_weight_from_the_environment(tmp_path: Path) -> None:
    loaded = load(tmp_path, TOML, {"GLIMPSE_DEFAULT_STORE_WEIGHT": "7",
                                   "GLIMPSE_DEFAULT_STORE_DESCRIPTION": "env"})
    fast = next(c for c in loaded.stores if c.name == "fast")
    assert (fast.weight, fast.description, dict(fast.options)) == (7, "env",
                                                                   {"directory": "fast"})


@pytest.mark.parametrize("weight", ['"heavy"', "1.5", "true", "99999999999", '""'])
def test_a_bad_weight_is_refused(tmp_path: Path, weight: str) -> None:
    toml = f'[stores.a]\ndriver = "memory"\nweight = {weight}\n'
    with pytest.raises(Invalid, match=r"stores\.a\.weight"):
        load(tmp_path, toml)


def test_multi_store_is_off_by_default(tmp_path: Path) -> None:
    catalog = build_catalog(load(tmp_path, '[stores.a]\ndriver = "memory"\n'))
    assert not catalog.multi_store and catalog.default == "file"
