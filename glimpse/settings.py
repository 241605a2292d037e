"""Typed settings, loaded once at start-up and passed explicitly.

Sources, later ones winning: built-in defaults, a TOML file (``--config``), environment
variables ``GLIMPSE_<NAME>`` (upper-case field name), then command-line flags.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glimpse.errors import Invalid

DEFAULT_DISK_FORMATS = (
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
)
DEFAULT_CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker")
# The disk formats oslo.utils' format inspector knows (tests/unit checks this against it).
INSPECTABLE_DISK_FORMATS = (
    "raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt", "luks",
)
DEFAULT_INSPECTION_DISK_FORMATS = ("raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso")

_SIZE_SUFFIXES = {"": 1, "B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every operator setting. See docs/configuration.md for the reference table."""

    host: str = "127.0.0.1"
    port: int = 9292
    data_dir: Path = Path("glimpse-data")
    database_url: str = ""  # empty: SQLite file inside data_dir
    auth_strategy: str = "noauth"
    allow_unauthenticated_remote: bool = False
    public_endpoint: str = ""
    workers: int = 1
    log_level: str = "info"
    limit_param_default: int = 25
    api_limit_max: int = 1000
    image_size_cap: int = 1 << 40
    image_property_quota: int = 128
    image_member_quota: int = 128
    user_storage_quota: int = 0
    owner_is_tenant: bool = True
    delayed_delete: bool = False
    disk_formats: tuple[str, ...] = DEFAULT_DISK_FORMATS
    container_formats: tuple[str, ...] = DEFAULT_CONTAINER_FORMATS
    default_store: str = "file"
    multihash_algorithm: str = "sha512"
    max_header_line: int = 16384
    external_allowed_networks: tuple[Network, ...] = ()
    external_timeout: float = 30.0
    external_max_redirects: int = 5
    inspection_disk_formats: tuple[str, ...] = DEFAULT_INSPECTION_DISK_FORMATS
    inspection_strict_raw: bool = True

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glimpse.sqlite').resolve()}"


def to_json(settings: Settings) -> str:
    """The settings as JSON that ``from_json`` reads back: how worker processes get them."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = [str(v) for v in value]
        values[field.name] = value
    return json.dumps(values)


def from_json(text: str) -> Settings:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    return Settings(**{k: _convert(fields[k], v) for k, v in json.loads(text).items()})


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix (B, KB, MB, GB, TB)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?B?)\s*", text.upper())
    if not match:
        raise Invalid(f"Invalid size {text!r}: expected a number with an optional B/KB/MB/GB/TB")
    return int(match.group(1)) * _SIZE_SUFFIXES[match.group(2)]


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "y", "t"):
        return True
    if value in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise Invalid(f"Invalid boolean {text!r}")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_networks(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in _parse_list(text))
    except ValueError as exc:
        raise Invalid(f"Invalid network in external_allowed_networks: {exc}") from exc


def _convert(field: dataclasses.Field[Any], raw: Any) -> Any:
    """Turn a value from a file, the environment or a flag into the field's type."""
    name = field.name
    if name == "external_allowed_networks":
        return _parse_networks(raw if isinstance(raw, str) else ",".join(raw))
    if name in ("disk_formats", "container_formats", "inspection_disk_formats"):
        return _parse_list(raw) if isinstance(raw, str) else tuple(str(x) for x in raw)
    if name in ("image_size_cap", "user_storage_quota"):
        return raw if isinstance(raw, int) else parse_size(str(raw))
    default = field.default
    if isinstance(default, bool):
        return raw if isinstance(raw, bool) else parse_bool(str(raw))
    if isinstance(default, int):
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"Invalid integer for {name}: {raw!r}") from exc
    if isinstance(default, float):
        try:
            return float(raw)
        except (TypeError, ValueError) as exc:
            raise Invalid(f"Invalid number for {name}: {raw!r}") from exc
    if isinstance(default, Path):
        return Path(str(raw))
    return str(raw)


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, then the file, the environment and the overrides."""
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            document = tomllib.load(fh)
        section = document.get("glimpse", document)
        for key, raw in section.items():
            if key not in fields:
                raise Invalid(f"Unknown setting {key!r} in {config_file}")
            values[key] = _convert(fields[key], raw)
    for name, field in fields.items():
        raw_env = env.get(f"GLIMPSE_{name.upper()}")
        if raw_env is not None:
            values[name] = _convert(field, raw_env)
    for name, raw in (overrides or {}).items():
        if raw is not None:
            values[name] = _convert(fields[name], raw)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.auth_strategy not in ("noauth",):
        raise Invalid(f"Unknown auth_strategy {settings.auth_strategy!r} (supported: noauth)")
    if settings.multihash_algorithm not in ("sha512", "sha384", "sha256", "sha1", "md5"):
        raise Invalid(f"Unsupported multihash_algorithm {settings.multihash_algorithm!r}")
    if settings.default_store not in ("file", "filesystem"):
        raise Invalid(f"Unknown default_store {settings.default_store!r}")
    if settings.limit_param_default < 0 or settings.api_limit_max < 1:
        raise Invalid("limit_param_default must be >= 0 and api_limit_max >= 1")
    if settings.workers < 1:
        raise Invalid("workers must be at least 1")
    uninspectable = sorted(set(settings.inspection_disk_formats) - set(INSPECTABLE_DISK_FORMATS))
    if uninspectable:
        raise Invalid(f"inspection_disk_formats: no inspector for {', '.join(uninspectable)} "
                      f"(known: {', '.join(INSPECTABLE_DISK_FORMATS)})")
