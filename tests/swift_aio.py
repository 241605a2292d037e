"""The Swift all-in-one that ``scripts/swift-aio start`` runs: how tests reach it.

Its endpoint and test credentials are the script's (``scripts/swift-aio env``); they are test
fixtures of a throwaway loopback service, not secrets.
"""

from __future__ import annotations

import os

import httpx
import pytest

PORT = int(os.environ.get("SWIFT_AIO_PORT", "8080"))
ENDPOINT = f"http://127.0.0.1:{PORT}"
USER = "test:tester"
KEY = "testing"


def available() -> bool:
    try:
        return httpx.get(f"{ENDPOINT}/healthcheck", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def require() -> None:
    """Skip the calling test when no Swift all-in-one answers (CI fails on skips)."""
    if not available():
        pytest.skip(f"no Swift all-in-one on {ENDPOINT}: run scripts/swift-aio start")


def store_options(driver: str, endpoint: str = ENDPOINT, **extra: object) -> dict[str, str]:
    """A store table (as settings hold it) for the all-in-one, through ``endpoint``."""
    if driver == "swift":
        options = {"auth_url": f"{endpoint}/auth/v1.0", "user": USER, "key": KEY,
                   "container": "glimpse-test"}
    elif driver == "s3":
        options = {"endpoint_url": endpoint, "access_key": USER, "secret_key": KEY,
                   "bucket": "glimpse-test", "region": "us-east-1"}
    else:
        raise ValueError(driver)
    return {**options, **{k: str(v) for k, v in extra.items()}}


def store_env(driver: str, endpoint: str = ENDPOINT, **extra: object) -> dict[str, str]:
    """Settings making a store of ``driver`` on the all-in-one the default."""
    return default_store_env(driver, store_options(driver, endpoint, **extra))


def default_store_env(driver: str, options: dict[str, str]) -> dict[str, str]:
    """Settings (names as in docs/configuration.md) making a store of ``driver`` with
    ``options`` the default, configured through the ``GLIMPSE_DEFAULT_STORE_*`` variables as
    an operator would."""
    settings = {"default_store": driver, "default_store_driver": driver}
    for name, value in options.items():
        settings[f"default_store_{name}"] = value
    return settings


# An account of the all-in-one whose key is distinctive enough to search logs and answers for.
PROBE_USER = "glimpse:probe"
PROBE_KEY = "Zq8-never-log-me"


def probe_credentials(driver: str) -> dict[str, str]:
    if driver == "swift":
        return {"user": PROBE_USER, "key": PROBE_KEY}
    return {"access_key": PROBE_USER, "secret_key": PROBE_KEY}
