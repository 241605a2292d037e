"""Typed settings, loaded once at start-up and passed explicitly.

Sources, later ones winning: built-in defaults, a TOML file (``--config``), environment
variables ``GLIMPSE_<NAME>`` (upper-case field name), then command-line flags.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from glimpse.errors import Invalid
from glimpse.scalars import Scalar, scalar

DEFAULT_DISK_FORMATS = (
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
)
DEFAULT_CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker")
# The disk formats oslo.utils' format inspector knows (tests/unit checks this against it).
INSPECTABLE_DISK_FORMATS = (
    "raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "qed", "iso", "gpt", "luks",
)
DEFAULT_INSPECTION_DISK_FORMATS = ("raw", "qcow2", "vhd", "vhdx", "vmdk", "vdi", "iso")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
STORE_ENV_PREFIX = "GLIMPSE_DEFAULT_STORE_"


@dataclasses.dataclass(frozen=True)
class StoreConfig:
    """One named store as configured: its driver and the driver's options (which may hold
    credentials, so they are left out of the repr and never logged). The store registry
    (glimpse.stores.registry) checks names and drivers and types the options."""

    name: str
    driver: str
    options: Mapping[str, Scalar] = dataclasses.field(default_factory=dict, repr=False)
    # What every store has besides its driver's options (docs/multi-store.md): the text
    # /v2/info/stores shows, and the weight downloads choose among an image's copies by.
    description: str = ""
    weight: int = 0


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
    log_format: str = "text"  # or "json": one JSON object per line (docs/operations.md)
    # Prometheus metrics (docs/operations.md): served on a listener of their own, never on the
    # API's port; 0 leaves metrics off (and prometheus_client unloaded).
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # oslo.middleware's disable_by_file: while this file exists, /healthcheck answers 503
    # "DISABLED BY FILE" (how an operator takes a node out of a load balancer). Empty: none.
    healthcheck_disable_file: str = ""
    healthcheck_timeout: float = 3.0  # each probe of the detailed health check
    limit_param_default: int = 25
    api_limit_max: int = 1000
    image_size_cap: int = 1 << 40
    image_property_quota: int = 128
    image_tag_quota: int = 128
    image_member_quota: int = 128
    image_location_quota: int = 10
    user_storage_quota: int = 0
    owner_is_tenant: bool = True
    delayed_delete: bool = False
    # v2's legacy ``locations`` attribute and ``direct_url``: they show where data is kept and
    # let owners point images at URLs (OSSN-0065, OSSN-0090), so both are off by default.
    show_multiple_locations: bool = False
    show_image_direct_url: bool = False
    disk_formats: tuple[str, ...] = DEFAULT_DISK_FORMATS
    container_formats: tuple[str, ...] = DEFAULT_CONTAINER_FORMATS
    default_store: str = "file"
    # Glance's multi-store (its enabled_backends): /v2/info/stores, the ``stores`` attribute,
    # OpenStack-image-store-ids and DELETE /v2/stores/... (docs/multi-store.md).
    multi_store: bool = False
    multihash_algorithm: str = "sha512"
    max_header_line: int = 16384
    external_allowed_networks: tuple[Network, ...] = ()
    external_timeout: float = 30.0
    external_max_redirects: int = 5
    upload_heartbeat_interval: float = 10.0
    stale_upload_timeout: float = 60.0
    shutdown_grace_period: float = 30.0
    header_timeout: float = 30.0
    body_idle_timeout: float = 60.0
    stores: tuple[StoreConfig, ...] = ()
    store_cleanup_interval: float = 60.0
    inspection_disk_formats: tuple[str, ...] = DEFAULT_INSPECTION_DISK_FORMATS
    inspection_strict_raw: bool = True
    inspection_relax_partition_checks: bool = False
    # An operator's schema-image.json (custom properties of the v2 image schema); None: none.
    image_schema_file: Path | None = None
    # Glance's property protections (docs/property-protections.md): a file of rules, in the
    # ``roles`` or the ``policies`` format; None: no protections.
    property_protection_file: Path | None = None
    property_protection_rule_format: str = "roles"
    # auth_strategy = "keystone" (docs/identity.md): glimpse's service user, and how tokens
    # are validated and cached.
    keystone_auth_url: str = ""
    keystone_username: str = "glimpse"
    keystone_password: str = dataclasses.field(default="", repr=False)
    keystone_user_domain_name: str = "Default"
    keystone_project_name: str = "service"
    keystone_project_domain_name: str = "Default"
    keystone_www_authenticate_uri: str = ""  # empty: keystone_auth_url
    keystone_timeout: float = 5.0
    keystone_service_type: str = "image"
    token_cache_time: int = 300
    token_cache_size: int = 10000
    service_token_roles: tuple[str, ...] = ("service",)
    service_token_roles_required: bool = True
    # Operators' policy overrides (docs/identity.md): Glance's policy.yaml and policy.d.
    policy_file: Path | None = None
    policy_dirs: tuple[Path, ...] = ()
    policy_reload_interval: float = 5.0  # 0: read once at start-up
    # oslo.policy's option, accepted only at its value: glimpse has no deprecated defaults.
    enforce_new_defaults: bool = True
    # Quotas from Keystone's unified limits (docs/identity.md), read with the keystone_*
    # service user scoped to the system; they replace user_storage_quota.
    use_keystone_limits: bool = False
    keystone_limits_cache_time: float = 60.0
    keystone_limits_endpoint_id: str = ""  # empty: the keystone_service_type endpoint
    keystone_limits_region: str = ""
    keystone_limits_interface: str = "public"
    # Glance's notifications (docs/notifications.md), sent through oslo.messaging (the extra
    # glimpse[notifications]); off by default. The transport URL holds the broker's password:
    # it is never logged nor shown.
    notifications: bool = False
    notification_driver: tuple[str, ...] = ("messagingv2",)
    notification_transport_url: str = dataclasses.field(default="", repr=False)
    notification_topics: tuple[str, ...] = ("notifications",)
    notification_publisher_id: str = "image.localhost"  # Glance's default_publisher_id
    # Events waiting for the sender thread, per process; past this they are dropped.
    notification_queue_size: int = 1000
    # oslo.messaging's retry of one event while the broker is unreachable: -1 retries until
    # it is back (the queue fills meanwhile, and drops), 0 tries once.
    notification_retry: int = -1
    # Glance's disabled_notifications: event types (image.send) or groups (image.member).
    disabled_notifications: tuple[str, ...] = ()
    # The import plugins (docs/import-plugins.md), all off by default: decompression (gzip,
    # zip, bz2, xz; output held to the size below and image_size_cap; 0: the cap alone),
    # conversion with qemu-img to import_convert_to ("raw" or "qcow2"; empty: off), under a
    # timeout and CPU and address-space limits, and properties ("key:value") injected into
    # every imported image unless the importer has one of import_inject_ignore_roles.
    import_decompress: bool = False
    import_decompress_max_size: int = 0
    import_convert_to: str = ""
    import_convert_timeout: float = 600.0
    import_convert_cpu_seconds: int = 300
    import_convert_address_space: int = 2 << 30
    import_inject_properties: tuple[str, ...] = ()
    import_inject_ignore_roles: tuple[str, ...] = ("admin",)
    # The node's image cache (docs/cache.md): off unless a directory is set (relative paths
    # are inside data_dir). Every worker of the node shares it; it holds at most
    # image_cache_max_size bytes, least recently used entries evicted first.
    image_cache_dir: Path | None = None
    image_cache_max_size: int = 10 << 30
    # How long a reader waits for a running fill of the same image to show its partial
    # file before reading from the store instead; how often the sweep drops copies of deleted
    # or deactivated images, and the prefetcher looks at the queue for entries other
    # processes added.
    image_cache_fill_wait: float = 120.0
    image_cache_sweep_interval: float = 30.0
    image_cache_prefetch_interval: float = 5.0
    # This node's URL in GET /v2/cache/nodes/{id}; empty: public_endpoint, else http://host:port.
    image_cache_node_url: str = ""
    # v2 interoperable import (docs/import.md): the methods offered, the store staged data is
    # written to (empty: the default store; shared by every API process, so a stage and its
    # import may reach different ones), how many stores one import writes at once, and how
    # often a web-download resumes a dropped transfer with a Range request.
    import_methods: tuple[str, ...] = ("glance-direct", "web-download", "copy-image")
    staging_store: str = ""
    max_parallel_stores: int = 2
    web_download_retries: int = 3
    # glance-download (docs/import.md): the remote image's keys copied onto the local image,
    # by prefix (Glance's [glance_download_properties] extra_properties).
    glance_download_properties: tuple[str, ...] = (
        "hw_", "trait:", "os_distro", "os_secure_boot", "os_type")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'glimpse.sqlite').resolve()}"

    @property
    def effective_cache_dir(self) -> Path | None:
        if self.image_cache_dir is None or not str(self.image_cache_dir):
            return None
        return self.data_dir / self.image_cache_dir  # an absolute one stays itself


def to_json(settings: Settings) -> str:
    """The settings as JSON that ``from_json`` reads back: how worker processes get them."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(Settings):
        value = getattr(settings, field.name)
        if isinstance(value, Path):
            value = str(value)
        elif value is None:
            pass
        elif field.name == "stores":
            value = {c.name: {"driver": c.driver, **c.options,
                              **_common_store_options(c)} for c in value}
        elif isinstance(value, tuple):
            value = [str(v) for v in value]
        values[field.name] = value
    return json.dumps(values)


def from_json(text: str) -> Settings:
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    return Settings(**{k: _convert(fields[k], v) for k, v in json.loads(text).items()})


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_networks(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(item, strict=False) for item in _parse_list(text))
    except ValueError as exc:
        raise Invalid(f"Invalid network in external_allowed_networks: {exc}") from exc


def _parse_stores(raw: Any) -> tuple[StoreConfig, ...]:
    """``{name: {"driver": ..., option: value, ...}}`` (TOML tables) into StoreConfigs."""
    if not isinstance(raw, Mapping):
        raise Invalid("stores must be a table of named store tables")
    configs = []
    for name, table in raw.items():
        if not isinstance(table, Mapping):
            raise Invalid(f"stores.{name} must be a table")
        options = {str(k): v for k, v in table.items() if k != "driver"}
        for key, value in options.items():
            if not isinstance(value, Scalar):
                raise Invalid(f"stores.{name}.{key} must be a string, number or boolean")
        configs.append(_store_config(str(name), str(table.get("driver", "")), options))
    return tuple(configs)


# Options of every store, whatever its driver: kept out of the driver's options.
COMMON_STORE_OPTIONS = ("description", "weight")


def _store_config(name: str, driver: str, options: Mapping[str, Scalar]) -> StoreConfig:
    """A StoreConfig, with the options every store has taken out of the driver's."""
    rest = {k: v for k, v in options.items() if k not in COMMON_STORE_OPTIONS}
    description = options.get("description", "")
    weight = options.get("weight", 0)
    if isinstance(weight, bool) or not isinstance(weight, int | str):
        raise Invalid(f"stores.{name}.weight must be an integer")
    try:
        weight = int(weight)
    except ValueError:
        raise Invalid(f"stores.{name}.weight must be an integer") from None
    if not -(2 ** 31) <= weight < 2 ** 31:
        raise Invalid(f"stores.{name}.weight must be between -2147483648 and 2147483647")
    return StoreConfig(name, driver, rest, description=str(description), weight=weight)


def _common_store_options(config: StoreConfig) -> dict[str, Scalar]:
    common: dict[str, Scalar] = {}
    if config.description:
        common["description"] = config.description
    if config.weight:
        common["weight"] = config.weight
    return common


def _with_store_env(
    stores: tuple[StoreConfig, ...], default_store: str, env: Mapping[str, str]
) -> tuple[StoreConfig, ...]:
    """Merge ``GLIMPSE_DEFAULT_STORE_<OPTION>`` variables into the default store's table
    (creating it): how a container or a CI job configures its one store without a file."""
    found = {k[len(STORE_ENV_PREFIX):].lower(): v for k, v in env.items()
             if k.startswith(STORE_ENV_PREFIX) and len(k) > len(STORE_ENV_PREFIX)}
    if not found:
        return stores
    current = next((c for c in stores if c.name == default_store), None)
    driver = found.pop("driver", current.driver if current else "")
    options = {**(current.options if current else {}),
               **(_common_store_options(current) if current else {}), **found}
    merged = _store_config(default_store, driver, options)
    return (*(c for c in stores if c.name != default_store), merged)


def _convert(field: dataclasses.Field[Any], raw: Any) -> Any:
    """Turn a value from a file, the environment or a flag into the field's type."""
    name = field.name
    if name == "stores":
        return _parse_stores(raw)
    if name in ("image_schema_file", "property_protection_file", "policy_file",
                "image_cache_dir"):
        return Path(str(raw)) if raw not in (None, "") else None
    if name == "policy_dirs":
        items = _parse_list(raw) if isinstance(raw, str) else tuple(str(x) for x in raw)
        return tuple(Path(item) for item in items)
    if name == "external_allowed_networks":
        return _parse_networks(raw if isinstance(raw, str) else ",".join(raw))
    if name in ("disk_formats", "container_formats", "inspection_disk_formats",
                "service_token_roles", "notification_driver", "notification_topics",
                "disabled_notifications", "import_inject_properties",
                "import_inject_ignore_roles", "import_methods",
                "glance_download_properties"):
        return _parse_list(raw) if isinstance(raw, str) else tuple(str(x) for x in raw)
    default = field.default
    sizes = ("image_size_cap", "user_storage_quota", "import_decompress_max_size",
             "import_convert_address_space", "image_cache_max_size")
    if name in sizes or isinstance(default, int | float):
        try:
            return scalar(default, raw, size=name in sizes)
        except (TypeError, ValueError) as exc:
            kind = "integer" if isinstance(default, int) else "number"
            raise Invalid(f"Invalid {kind} for {name}: {raw!r}") from exc
    if isinstance(default, Path):
        return Path(str(raw))
    return str(raw)


def load(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build Settings from defaults, then the file, the environment and the overrides.

    Store tables are only shaped here; their names, drivers and options are the store
    registry's to check (``glimpse.stores.registry.check_stores``, at start-up)."""
    env = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        with config_file.open("rb") as fh:
            document = tomllib.load(fh)
        section = dict(document.get("glimpse", document))
        if "glimpse" in document and "stores" in document:
            section.setdefault("stores", document["stores"])
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
    default_store = values.get("default_store", Settings.default_store)
    values["stores"] = _with_store_env(values.get("stores", ()), default_store, env)
    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.auth_strategy not in ("noauth", "keystone"):
        raise Invalid(f"Unknown auth_strategy {settings.auth_strategy!r} "
                      f"(supported: noauth, keystone)")
    if settings.auth_strategy == "keystone":
        _validate_keystone(settings)
    if settings.property_protection_rule_format not in ("roles", "policies"):
        raise Invalid(f"Invalid property_protection_rule_format "
                      f"{settings.property_protection_rule_format!r} (roles or policies)")
    if settings.use_keystone_limits:
        _validate_limits(settings)
    if settings.multihash_algorithm not in ("sha512", "sha384", "sha256", "sha1", "md5"):
        raise Invalid(f"Unsupported multihash_algorithm {settings.multihash_algorithm!r}")
    if settings.image_cache_max_size < 1 or settings.image_cache_fill_wait < 0:
        raise Invalid("image_cache_max_size must be >= 1 and image_cache_fill_wait >= 0")
    if min(settings.image_cache_sweep_interval, settings.image_cache_prefetch_interval) <= 0:
        raise Invalid("image_cache_sweep_interval and image_cache_prefetch_interval must be > 0")
    if settings.limit_param_default < 0 or settings.api_limit_max < 1:
        raise Invalid("limit_param_default must be >= 0 and api_limit_max >= 1")
    if settings.store_cleanup_interval < 0:
        raise Invalid("store_cleanup_interval must be >= 0")
    if settings.log_format not in ("text", "json"):
        raise Invalid(f"Unknown log_format {settings.log_format!r} (supported: text, json)")
    if not 0 <= settings.metrics_port <= 65535:
        raise Invalid("metrics_port must be between 0 (off) and 65535")
    if settings.metrics_port and settings.metrics_port == settings.port:
        raise Invalid("metrics_port must differ from port: metrics have a listener of their own")
    if settings.healthcheck_timeout <= 0:
        raise Invalid("healthcheck_timeout must be positive")
    if settings.workers < 1:
        raise Invalid("workers must be at least 1")
    if not 0 < settings.upload_heartbeat_interval < settings.stale_upload_timeout / 2:
        raise Invalid("upload_heartbeat_interval must be positive and under half of "
                      "stale_upload_timeout, or live uploads would be taken for dead ones")
    if settings.policy_reload_interval < 0:
        raise Invalid("policy_reload_interval must be >= 0")
    _validate_imports(settings)
    if not settings.enforce_new_defaults:
        # oslo.policy would OR every rule with its deprecated form, which for Glance is
        # "anyone": glimpse refuses that rather than open every API (docs/identity.md).
        raise Invalid("enforce_new_defaults = false is not supported: glimpse enforces "
                      "Glance's current defaults only; write the rules you need in "
                      "policy_file instead")
    if settings.notifications:
        _validate_notifications(settings)
    uninspectable = sorted(set(settings.inspection_disk_formats) - set(INSPECTABLE_DISK_FORMATS))
    if uninspectable:
        raise Invalid(f"inspection_disk_formats: no inspector for {', '.join(uninspectable)} "
                      f"(known: {', '.join(INSPECTABLE_DISK_FORMATS)})")


def _validate_imports(settings: Settings) -> None:
    known = ("glance-direct", "web-download", "copy-image", "glance-download")
    unknown = [m for m in settings.import_methods if m not in known]
    if unknown:
        raise Invalid(f"Unknown import_methods {', '.join(unknown)} (supported: "
                      f"{', '.join(known)})")
    if "glance-download" in settings.import_methods and settings.auth_strategy != "keystone":
        # It finds the other region in the caller's Keystone catalog and fetches with the
        # caller's token: without Keystone there is neither.
        raise Invalid("import_methods: glance-download needs auth_strategy keystone (it finds "
                      "the other region's image service in the caller's Keystone catalog)")
    if settings.max_parallel_stores < 1:
        raise Invalid("max_parallel_stores must be at least 1")
    if not 0 <= settings.web_download_retries <= 100:
        raise Invalid("web_download_retries must be between 0 and 100")


def _validate_notifications(settings: Settings) -> None:
    known = ("messagingv2", "messaging", "log", "noop")
    unknown = [d for d in settings.notification_driver if d not in known]
    if unknown or not settings.notification_driver:
        raise Invalid(f"notification_driver: one or more of {', '.join(known)}")
    sends = {"messagingv2", "messaging"} & set(settings.notification_driver)
    if sends and not settings.notification_transport_url:
        raise Invalid("notification_driver messagingv2/messaging needs "
                      "notification_transport_url (rabbit://user:password@host:5672/)")
    if sends and not settings.notification_topics:
        raise Invalid("notification_topics must name at least one topic")
    if settings.notification_queue_size < 1:
        raise Invalid("notification_queue_size must be at least 1")
    if settings.notification_retry < -1:
        raise Invalid("notification_retry must be -1 (until delivered) or more")


def _validate_limits(settings: Settings) -> None:
    missing = [name for name in ("keystone_auth_url", "keystone_username", "keystone_password")
               if not getattr(settings, name)]
    if missing:
        raise Invalid(f"use_keystone_limits needs {', '.join(missing)}")
    if not settings.keystone_auth_url.startswith(("http://", "https://")):
        raise Invalid("keystone_auth_url must be an http:// or https:// URL")
    if settings.keystone_limits_cache_time < 0:
        raise Invalid("keystone_limits_cache_time must be >= 0")
    if settings.keystone_limits_interface not in ("public", "internal", "admin"):
        raise Invalid("keystone_limits_interface must be public, internal or admin")
    if settings.keystone_timeout <= 0:
        raise Invalid("keystone_timeout must be positive")


def _validate_keystone(settings: Settings) -> None:
    missing = [name for name in ("keystone_auth_url", "keystone_username", "keystone_password",
                                 "keystone_project_name") if not getattr(settings, name)]
    if missing:
        raise Invalid(f"auth_strategy keystone needs {', '.join(missing)}")
    if not settings.keystone_auth_url.startswith(("http://", "https://")):
        raise Invalid("keystone_auth_url must be an http:// or https:// URL")
    if not settings.owner_is_tenant:
        # A token's project owns what it creates: Glance's policy rules compare owners with
        # the token's project id.
        raise Invalid("auth_strategy keystone requires owner_is_tenant = true")
    if settings.keystone_timeout <= 0:
        raise Invalid("keystone_timeout must be positive")
    if settings.token_cache_size < 0:
        raise Invalid("token_cache_size must be >= 0")
    if settings.service_token_roles_required and not settings.service_token_roles:
        raise Invalid("service_token_roles is empty, so no service token could be accepted "
                      "while service_token_roles_required is true")
