"""How glimpse reads Keystone's unified limits (KeystoneLimits), with keystoneauth's session
stood in for: overrides, missing and unlimited values, the cache, the model and endpoint found
once, and outages as 503s that never pass."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from keystoneauth1 import exceptions as ks_exceptions

from glimpse.api.keystone_limits import KeystoneLimits
from glimpse.api.keystone_tokens import ServiceCredentials
from glimpse.domain.quotas import MiB
from glimpse.errors import Invalid, Unavailable

SECRET = "S3cret-never-shown"
SERVICE, ENDPOINT = "svc-1", "ep-1"


class Answer:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        return self._body


class Keystone:
    """Answers by path; ``down`` makes every call fail as keystoneauth does."""

    def __init__(self) -> None:
        self.model = "flat"
        self.registered = [{"resource_name": "image_count_total", "default_limit": 2},
                           {"resource_name": "image_size_total", "default_limit": 1},
                           {"resource_name": "image_count_uploading", "default_limit": -1}]
        self.own: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.down = False
        self.status = 200

    def get(self, url: str, params: dict[str, str], **_: Any) -> Answer:
        path = urlsplit(url).path.removeprefix("/v3")
        self.calls.append((path, params))
        if self.down:
            raise ks_exceptions.ConnectFailure("Unable to establish connection")
        if self.status != 200:
            return Answer(self.status)
        answers: dict[str, Any] = {
            "/limits/model": {"model": {"name": self.model}},
            "/services": {"services": [{"id": SERVICE, "type": "image"}]},
            "/endpoints": {"endpoints": [{"id": ENDPOINT, "service_id": SERVICE,
                                          "region_id": "RegionOne"}]},
            f"/endpoints/{ENDPOINT}": {"endpoint": {"id": ENDPOINT, "service_id": SERVICE,
                                                    "region_id": "RegionOne"}},
            "/registered_limits": {"registered_limits": self.registered},
            "/limits": {"limits": [e for e in self.own
                                   if e["project_id"] == params.get("project_id")]},
        }
        return Answer(200, answers[path]) if path in answers else Answer(404)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def source(**options: Any) -> tuple[KeystoneLimits, Keystone, Clock]:
    clock = Clock()
    options.setdefault("cache_time", 60)
    found = KeystoneLimits(ServiceCredentials("http://k:5000", "glimpse", SECRET), timeout=1,
                           clock=clock, **options)
    keystone = Keystone()
    found._session = keystone  # type: ignore[assignment]
    return found, keystone, clock


def test_registered_limits_project_overrides_missing_and_unlimited() -> None:
    limits, keystone, _ = source()
    keystone.own = [{"project_id": "p1", "resource_name": "image_count_total",
                     "resource_limit": 5},
                    {"project_id": "p1", "resource_name": "image_size_total",
                     "resource_limit": -1}]
    assert limits.limits("p2") == {"image_size_total": MiB, "image_stage_total": 0,
                                   "image_count_total": 2, "image_count_uploading": None}
    assert limits.limits("p1") == {"image_size_total": None, "image_stage_total": 0,
                                   "image_count_total": 5, "image_count_uploading": None}
    # Read with the catalog's service and region.
    assert ("/limits", {"service_id": SERVICE, "region_id": "RegionOne",
                        "project_id": "p1"}) in keystone.calls


def test_the_model_and_endpoint_are_read_once_and_limits_cached_per_project() -> None:
    limits, keystone, clock = source()
    limits.limits("p")
    limits.limits("p")
    paths = [path for path, _ in keystone.calls]
    assert paths == ["/limits/model", "/services", "/endpoints", "/registered_limits",
                     "/limits"]
    keystone.registered = [{"resource_name": "image_count_total", "default_limit": 7}]
    clock.now += 59
    assert limits.limits("p")["image_count_total"] == 2
    clock.now += 2
    assert limits.limits("p")["image_count_total"] == 7
    assert [p for p, _ in keystone.calls].count("/limits/model") == 1


def test_no_cache_reads_every_time() -> None:
    limits, keystone, _ = source(cache_time=0)
    limits.limits("p")
    limits.limits("p")
    assert [p for p, _ in keystone.calls].count("/limits") == 2


def test_an_endpoint_id_names_the_service() -> None:
    limits, keystone, _ = source(endpoint_id=ENDPOINT)
    limits.check()
    assert [p for p, _ in keystone.calls] == ["/limits/model", f"/endpoints/{ENDPOINT}",
                                              "/registered_limits"]


def test_another_model_or_no_endpoint_is_a_configuration_error() -> None:
    limits, keystone, _ = source()
    keystone.model = "strict-two-level"
    with pytest.raises(Invalid, match="flat"):
        limits.check()
    # Found after start (Keystone was down then): refused with 503, never a pass.
    with pytest.raises(Unavailable):
        limits.limits("p")
    limits, keystone, _ = source(endpoint_id="nope")
    with pytest.raises(Invalid, match="no endpoint nope"):
        limits.check()


def test_a_service_user_without_system_reader_is_told_so() -> None:
    limits, keystone, _ = source()
    keystone.status = 403
    with pytest.raises(Invalid, match="--system all reader") as refused:
        limits.check()
    assert SECRET not in refused.value.message


@pytest.mark.parametrize("status", [500, 502, None])
def test_keystone_down_or_failing_is_503_with_retry_after(status: int | None) -> None:
    limits, keystone, clock = source()
    limits.limits("cached")
    if status is None:
        keystone.down = True
    else:
        keystone.status = status
    with pytest.raises(Unavailable) as refused:
        limits.limits("other")
    assert refused.value.retry_after == 5
    assert SECRET not in refused.value.message
    # A cached project still answers until its entry expires.
    assert limits.limits("cached")["image_count_total"] == 2
    clock.now += 61
    with pytest.raises(Unavailable):
        limits.limits("cached")


def test_settings_need_credentials_and_sane_values() -> None:
    from glimpse import settings as settings_mod

    base = {"GLIMPSE_USE_KEYSTONE_LIMITS": "true",
            "GLIMPSE_KEYSTONE_AUTH_URL": "http://k:5000/v3",
            "GLIMPSE_KEYSTONE_PASSWORD": SECRET}
    loaded = settings_mod.load(environ={**base, "GLIMPSE_KEYSTONE_LIMITS_CACHE_TIME": "2.5"})
    assert loaded.use_keystone_limits and loaded.keystone_limits_cache_time == 2.5
    assert SECRET not in repr(loaded)
    for broken, words in (({"GLIMPSE_KEYSTONE_PASSWORD": ""}, "needs keystone_password"),
                          ({"GLIMPSE_KEYSTONE_AUTH_URL": "k:5000"}, "http:// or https://"),
                          ({"GLIMPSE_KEYSTONE_LIMITS_CACHE_TIME": "-1"}, ">= 0"),
                          ({"GLIMPSE_KEYSTONE_LIMITS_INTERFACE": "private"}, "public")):
        with pytest.raises(Invalid, match=words):
            settings_mod.load(environ={**base, **broken})
    # Off by default: the settings' user_storage_quota is the source.
    from glimpse.app import limit_source

    static = limit_source(settings_mod.load(environ={"GLIMPSE_USER_STORAGE_QUOTA": "1KB"}))
    assert static.limits("p")["image_size_total"] == 1024 and not static.unified
    assert isinstance(limit_source(loaded), KeystoneLimits)
