"""Store configuration: settings shape the tables, the store registry checks and builds them."""

from __future__ import annotations

import ast
import pathlib
from pathlib import Path

import pytest

from glimpse import settings
from glimpse.cli.main import main
from glimpse.errors import Invalid
from glimpse.scalars import parse_bool, parse_size
from glimpse.stores.filesystem import FilesystemStore
from glimpse.stores.memory import MemoryStore
from glimpse.stores.registry import (
    READ_ONLY_STORES,
    RESERVED_STORE_NAMES,
    STORE_ALIASES,
    STORE_DRIVERS,
    build_stores,
    canonical_store_name,
    check_stores,
)

SECRET = "s3cr3t-never-shown"
ROOT = pathlib.Path(__file__).parents[2] / "glimpse"


def load(tmp_path: Path, env: dict[str, str] | None = None, toml: str = "") -> settings.Settings:
    config = None
    if toml:
        config = tmp_path / "glimpse.toml"
        config.write_text(toml)
    return settings.load(config, environ={"GLIMPSE_DATA_DIR": str(tmp_path), **(env or {})})


def refused(tmp_path: Path, env: dict[str, str] | None = None, toml: str = "") -> str:
    with pytest.raises(Invalid) as caught:
        check_stores(load(tmp_path, env, toml))
    return caught.value.message


def test_the_registry_names_the_drivers_and_the_names_of_meaning() -> None:
    assert STORE_DRIVERS == ("filesystem", "memory", "swift", "s3", "rbd")
    assert set(RESERVED_STORE_NAMES) == {"http", "https", "filesystem"}
    assert canonical_store_name("filesystem") == "file" == canonical_store_name("file")
    assert canonical_store_name("archive") == "archive"
    assert "file" not in RESERVED_STORE_NAMES and set(READ_ONLY_STORES) | set(STORE_ALIASES) == \
        set(RESERVED_STORE_NAMES)


def test_the_domain_records_external_data_under_the_registrys_name() -> None:
    """The domain may not import the registry: it spells the external store's name itself."""
    from glimpse.domain import data
    from glimpse.stores import registry

    assert data.EXTERNAL_STORE == registry.EXTERNAL_STORE
    assert data.EXTERNAL_STORE in registry.READ_ONLY_STORES


def test_an_unknown_driver_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, {"GLIMPSE_DEFAULT_STORE_DRIVER": "nope"})
    assert message == ("Store 'file': unknown driver 'nope' "
                       "(supported: filesystem, memory, swift, s3, rbd)")


@pytest.mark.parametrize("name", ["http", "https", "filesystem", "Big", "a/b", "x" * 65])
def test_store_names_that_are_refused(tmp_path: Path, name: str) -> None:
    message = refused(tmp_path, toml=f'[glimpse]\n[stores."{name}"]\ndriver = "memory"\n')
    assert message.startswith(f"Invalid store name {name!r}: lower-case letters")
    assert "not one of http, https, filesystem" in message


@pytest.mark.parametrize(("default_store", "ok"), [
    ("file", True), ("filesystem", True), ("mem", True), ("http", False), ("other", False),
])
def test_default_store(tmp_path: Path, default_store: str, ok: bool) -> None:
    toml = f'default_store = "{default_store}"\n[stores.mem]\ndriver = "memory"\n'
    if ok:
        check_stores(load(tmp_path, toml=toml))
    else:
        assert refused(tmp_path, toml=toml) == f"Unknown default_store {default_store!r}"


def test_a_memory_store_from_the_environment(tmp_path: Path) -> None:
    stores = build_stores(load(tmp_path, {"GLIMPSE_DEFAULT_STORE_DRIVER": "memory"}))
    assert list(stores) == ["file"] and isinstance(stores["file"], MemoryStore)
    assert stores["file"].name == "file"
    stores = build_stores(load(tmp_path, {"GLIMPSE_DEFAULT_STORE": "mem",
                                          "GLIMPSE_DEFAULT_STORE_DRIVER": "memory"}))
    assert isinstance(stores["file"], FilesystemStore) and isinstance(stores["mem"], MemoryStore)


def test_the_built_in_store_is_in_data_dir_even_when_it_is_relative(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = build_stores(settings.Settings(data_dir=Path("data")))["file"]
    assert isinstance(store, FilesystemStore) and store.directory == Path("data/images")


@pytest.mark.parametrize(("table", "expected"), [
    ('driver = "memory"\nbogus = 1', "Store 'st': unknown option(s) bogus (known: none)"),
    ('driver = "filesystem"\ndirect_io = "S"', "Store 'st': invalid value for option direct_io"),
    ('driver = "swift"\nauth_url = "x"\nuser = "u"', "Store 'st': option key is required"),
    ('driver = "swift"\nauth_url = "x"\nuser = "u"\nkey = "S"\ntimeout = "S"',
     "Store 'st': invalid value for option timeout"),
    ('driver = "swift"\nauth_url = "x"\nuser = "u"\nkey = "S"\nsegment_size = "S"',
     "Store 'st': invalid value for option segment_size"),
    ('driver = "swift"\nauth_url = "x"\nuser = "u"\nkey = "S"\nsegment_size = "1KB"',
     "Store 'st': segment_size must be between 1MB and 5GB"),
    ('driver = "s3"\nbucket = "b"\naccess_key = "S"\nsecret_key = "S"\naddressing_style = "S"',
     "Store 'st': addressing_style must be path, virtual or auto"),
    ('driver = "s3"\nbucket = "b"\naccess_key = "S"\nsecret_key = "S"\npart_size = "4MB"',
     "Store 'st': part_size must be between 5MB and 5GB"),
])
def test_bad_options_name_the_store_and_option_never_the_value(
    tmp_path: Path, table: str, expected: str
) -> None:
    secret_table = table.replace('"S"', f'"{SECRET}"')
    toml = f'default_store = "st"\n[stores.st]\n{secret_table}\n'
    assert refused(tmp_path, toml=toml) == expected


def test_options_are_typed_by_the_shared_conversions(tmp_path: Path) -> None:
    toml = ('[stores.s3]\ndriver = "s3"\nbucket = "b"\naccess_key = "a"\nsecret_key = "s"\n'
            'part_size = "8MB"\ncreate_bucket = "no"\ntimeout = "2.5"\n')
    store = build_stores(load(tmp_path, toml=toml))["s3"]
    options = store.options  # type: ignore[attr-defined]
    assert options.part_size == parse_size("8MB") == 8 << 20
    assert options.create_bucket is parse_bool("no") is False
    assert options.timeout == 2.5


def test_serve_refuses_a_bad_store_table_as_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before anything starts (no traceback, no database), as for any other bad setting."""
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLIMPSE_DEFAULT_STORE_DRIVER", "filesystem")
    monkeypatch.setenv("GLIMPSE_DEFAULT_STORE_BOGUS", SECRET)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("glimpse: configuration error: Store 'file': unknown option(s) bogus")
    assert SECRET not in err
    assert not (tmp_path / "data").exists()


def _imports(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_drivers_and_settings_do_not_know_each_other() -> None:
    """Only the registry reads settings; settings know no store."""
    assert not [n for n in _imports(ROOT / "settings.py") if n.startswith("glimpse.stores")]
    for path in (ROOT / "stores").glob("*.py"):
        if path.name != "registry.py":
            assert "glimpse.settings" not in _imports(path), path.name


def test_an_rbd_store_without_cephs_bindings_says_how_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    # As if Debian's python3-rados were not linked into the environment.
    monkeypatch.setitem(sys.modules, "rados", None)
    monkeypatch.delitem(sys.modules, "glimpse.stores.rbd", raising=False)
    message = refused(tmp_path, {"GLIMPSE_DEFAULT_STORE": "rbd",
                                 "GLIMPSE_DEFAULT_STORE_DRIVER": "rbd"})
    assert message.startswith("Store 'rbd' needs the rbd driver's library (rados)")
    assert "python3-rados and python3-rbd" in message and "scripts/ceph bindings" in message


@pytest.mark.parametrize(("option", "value"), [
    ("chunk_size", "3MB"), ("chunk_size", "64MB"), ("concurrent_writes", "0"),
    ("read_ahead", "65"), ("op_timeout", "0"), ("connect_timeout", "1.5"), ("pool", "a/b"),
])
def test_rbd_options_out_of_range_are_refused(tmp_path: Path, option: str, value: str) -> None:
    pytest.importorskip("rbd")
    message = refused(tmp_path, {"GLIMPSE_DEFAULT_STORE": "rbd",
                                 "GLIMPSE_DEFAULT_STORE_DRIVER": "rbd",
                                 f"GLIMPSE_DEFAULT_STORE_{option.upper()}": value})
    assert message.startswith("Store 'rbd': ") and option in message
