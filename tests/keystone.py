"""The Keystone that ``scripts/keystone start`` runs, and the Swift all-in-one accepting its
tokens: how tests reach them.

Its endpoint and credentials are the script's (``scripts/keystone env``); they are test fixtures
of a throwaway loopback service, not secrets.
"""

from __future__ import annotations

import functools
import os

import httpx
import pytest
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session
from keystoneauth1.identity import v3

from tests import swift_aio

PORT = int(os.environ.get("KEYSTONE_PORT", "5000"))
AUTH_URL = f"http://127.0.0.1:{PORT}/v3"
REGION = "RegionOne"
PROJECT = "service"
# The user of glimpse's Swift store (member of the service project, an operator role of the
# all-in-one's keystoneauth). Its password is distinctive so that logs and answers can be
# searched for it.
USER = "glimpse"
PASSWORD = "Kq7-glimpse-never-log-me"
ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT = "admin", "keystone-admin", "admin"
# The all-in-one's proxy for Keystone tokens (scripts/swift-aio), named by Keystone's catalog.
SWIFT_ENDPOINT = f"http://127.0.0.1:{swift_aio.PORT + 123}"
# Every fernet token starts so: a log holding one holds a token.
TOKEN_MARK = "gAAAAA"


def password_session(user: str, password: str, project: str) -> session.Session:
    return session.Session(auth=v3.Password(
        auth_url=AUTH_URL, username=user, password=password, project_name=project,
        user_domain_name="Default", project_domain_name="Default"))


@functools.cache
def _missing() -> str | None:
    """Why the Keystone tests cannot run here, or None when they can."""
    try:
        httpx.get(AUTH_URL, timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return (f"no Keystone on {AUTH_URL}: run scripts/keystone start, then "
                "scripts/swift-aio start")
    if not swift_aio.available():
        return f"no Swift all-in-one on {swift_aio.ENDPOINT}: run scripts/swift-aio start"
    user = password_session(USER, PASSWORD, PROJECT)
    try:
        url = user.get_endpoint(service_type="object-store", interface="public",
                                region_name=REGION)
    except ks_exceptions.ClientException as exc:
        return f"Keystone has no usable object-store entry for {USER} ({exc}): " \
               "run scripts/keystone start again"
    if not str(url).startswith(f"{SWIFT_ENDPOINT}/"):
        return f"Keystone's object-store endpoint is {url}, not the all-in-one's on " \
               f"{SWIFT_ENDPOINT}: run scripts/keystone start with the same SWIFT_AIO_PORT"
    try:
        httpx.get(f"{SWIFT_ENDPOINT}/healthcheck", timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return f"the Swift all-in-one does not serve Keystone tokens on {SWIFT_ENDPOINT}: " \
               "run scripts/swift-aio start while Keystone runs"
    answer = httpx.head(str(url), headers={"X-Auth-Token": str(user.get_token())}, timeout=10)
    if answer.status_code >= 300:
        return f"the Swift all-in-one refuses Keystone tokens (HTTP {answer.status_code}): " \
               "run scripts/swift-aio start while Keystone runs"
    return None


def require() -> None:
    """Skip the calling test when Keystone, or a Swift all-in-one that accepts its tokens, is
    missing (CI fails on skips)."""
    reason = _missing()
    if reason:
        pytest.skip(reason)


def store_options(**extra: object) -> dict[str, str]:
    """A Swift store table (as settings hold it) with the store user's Keystone credentials."""
    options = {"auth_url": AUTH_URL, "auth_version": "3", "user": USER, "key": PASSWORD,
               "project_name": PROJECT, "project_domain_name": "Default",
               "user_domain_name": "Default", "region_name": REGION,
               "container": "glimpse-test"}
    return {**options, **{k: str(v) for k, v in extra.items()}}


def store_env(**extra: object) -> dict[str, str]:
    """Settings making a Keystone-authenticated Swift store the default store."""
    return swift_aio.default_store_env("swift", store_options(**extra))


def revoke(token: str) -> None:
    """Revoke ``token`` as Keystone's admin, and check that Keystone no longer accepts it."""
    admin = password_session(ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT)
    admin.delete(f"{AUTH_URL}/auth/tokens", headers={"X-Subject-Token": token})
    check = admin.get(f"{AUTH_URL}/auth/tokens", headers={"X-Subject-Token": token},
                      raise_exc=False)
    assert check.status_code == 404, check.status_code
