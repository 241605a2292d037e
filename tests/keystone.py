"""The Keystone that ``scripts/keystone start`` runs, and the Swift all-in-one accepting its
tokens: how tests reach them.

Its endpoint and credentials are the script's (``scripts/keystone env``); they are test fixtures
of a throwaway loopback service, not secrets.
"""

from __future__ import annotations

import functools
import http.client
import http.server
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

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


# --- auth_strategy keystone: glimpse validates tokens as its service user -------------------

def _identity_missing() -> str | None:
    """Why keystone-mode tests cannot run here (they need Keystone only, not Swift)."""
    try:
        httpx.get(AUTH_URL, timeout=2.0).raise_for_status()
    except httpx.HTTPError:
        return f"no Keystone on {AUTH_URL}: run scripts/keystone start"
    user = password_session(USER, PASSWORD, PROJECT)
    try:
        roles = set(user.auth.get_access(user).role_names or ())
    except ks_exceptions.ClientException as exc:
        return f"glimpse's service user cannot log in to Keystone ({exc}): " \
               "run scripts/keystone start again"
    if "service" not in roles:
        return f"glimpse's service user lacks the service role (has {sorted(roles)}): run " \
               "scripts/keystone start from this tree (its provisioning grants it)"
    return None


_identity_reason = functools.cache(_identity_missing)


def require_identity() -> None:
    """Skip the calling test when Keystone, provisioned for keystone mode, is missing."""
    reason = _identity_reason()
    if reason:
        pytest.skip(reason)


def glimpse_settings(**extra: object) -> dict[str, str]:
    """Server settings for auth_strategy keystone with glimpse's service user."""
    settings = {"auth_strategy": "keystone", "keystone_auth_url": AUTH_URL,
                "keystone_username": USER, "keystone_password": PASSWORD,
                "keystone_project_name": PROJECT}
    return {**settings, **{k: str(v) for k, v in extra.items()}}


@functools.cache
def admin() -> session.Session:
    return password_session(ADMIN_USER, ADMIN_PASSWORD, ADMIN_PROJECT)


def _api(method: str, path: str, body: dict[str, object] | None = None) -> dict[str, Any]:
    # Retried on a refused or reset connection: Keystone shares the machine with three e2e
    # runs in CI, and once reset a fixture's lookup there (ConnectionResetError).
    answer = admin().request(AUTH_URL + path, method, json=body, connect_retries=3)
    return answer.json() if answer.content else {}


def _find_or_create(collection: str, singular: str, fields: dict[str, object],
                    **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    found = _api("GET", f"/{collection}?{params}")[collection]
    if found:
        return str(found[0]["id"])
    try:
        return str(_api("POST", f"/{collection}", {singular: fields})[singular]["id"])
    except ks_exceptions.Conflict:
        # Another test process (scripts/test runs several at once) created it meanwhile.
        return str(_api("GET", f"/{collection}?{params}")[collection][0]["id"])


def ensure_project(name: str) -> str:
    """The id of project ``name`` in the Default domain, created when missing."""
    return _find_or_create("projects", "project", {"name": name, "domain_id": "default"},
                           name=name, domain_id="default")


def ensure_user(name: str, password: str, project: str | None = None,
                *roles: str) -> str:
    """The id of user ``name`` (Default domain) with ``password`` and ``roles`` on
    ``project`` (a project id)."""
    user = _find_or_create("users", "user", {"name": name, "password": password,
                                             "domain_id": "default"},
                           name=name, domain_id="default")
    for role in roles:
        role_id = _find_or_create("roles", "role", {"name": role}, name=role)
        _api("PUT", f"/projects/{project}/users/{user}/roles/{role_id}")
    return user


def token_for(user: str, password: str, project: str) -> str:
    """A project-scoped token of ``user``."""
    return str(password_session(user, password, project).get_token())


class CountingProxy:
    """A reverse proxy in front of the test Keystone that writes one access-log line per
    request, in the common log format of Keystone's own access log (request line only, never a
    header: no token). Pointing a server's keystone_auth_url at it counts that server's calls
    alone, whatever else uses the shared Keystone meanwhile."""

    def __init__(self, log_path: Path) -> None:
        upstream = f"127.0.0.1:{PORT}"
        log_file = log_path.open("ab", buffering=0)
        self._log_file = log_file
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "connection", "keep-alive")}
                conn = http.client.HTTPConnection(upstream, timeout=30)
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    answer = conn.getresponse()
                    data = answer.read()
                finally:
                    conn.close()
                stamp = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())
                with lock:
                    log_file.write(f'127.0.0.1 - - [{stamp}] "{self.requestline}" '
                                   f'{answer.status} {len(data)}\n'.encode())
                self.send_response_only(answer.status, answer.reason)
                for name, value in answer.getheaders():
                    if name.lower() not in ("connection", "keep-alive", "transfer-encoding",
                                            "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_HEAD = do_DELETE = do_PATCH = do_PUT = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the access log above is the record

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.auth_url = f"http://127.0.0.1:{self._server.server_address[1]}/v3"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._log_file.close()
# --- unified limits: registered and project limits, set as a system-scoped admin ------------

@functools.cache
def system_admin() -> session.Session:
    """Keystone's admin scoped to the system: only such a token may set registered limits
    (scripts/keystone bootstraps the admin with the admin role on the system)."""
    return session.Session(auth=v3.Password(
        auth_url=AUTH_URL, username=ADMIN_USER, password=ADMIN_PASSWORD,
        user_domain_name="Default", system_scope="all"))


def system_call(method: str, path: str,
                body: dict[str, object] | None = None) -> dict[str, Any]:
    """A call to Keystone's API as the system-scoped admin (retried while its SQLite is
    locked); RuntimeError for a refusal."""
    for attempt in range(5):
        # The test Keystone's SQLite refuses a write while another holds its lock (500):
        # tests in parallel workers write limits at once.
        answer = system_admin().request(AUTH_URL + path, method, json=body, raise_exc=False)
        if answer.status_code < 500 or attempt == 4:
            break
        time.sleep(0.2 * (attempt + 1))
    if answer.status_code >= 400:
        raise RuntimeError(f"Keystone answered {method} {path} with {answer.status_code}: "
                           f"{answer.text[:200]}")
    return answer.json() if answer.content else {}


class LimitsService:
    """A catalog service of its own (type ``image-limits-<hex>``, one public endpoint) whose
    registered limits a test sets without touching anyone else's: glimpse reads them with
    ``keystone_limits_endpoint_id = endpoint_id``."""

    def __init__(self, registered: dict[str, int]) -> None:
        kind = f"image-limits-{uuid.uuid4().hex[:10]}"
        self.service_id = str(system_call("POST", "/services", {"service": {
            "type": kind, "name": kind}})["service"]["id"])
        self.endpoint_id = str(system_call("POST", "/endpoints", {"endpoint": {
            "service_id": self.service_id, "interface": "public", "region_id": REGION,
            "url": "http://127.0.0.1:9/"}})["endpoint"]["id"])
        for resource, value in registered.items():
            self.register(resource, value)

    def register(self, resource: str, value: int) -> None:
        """Set the registered (default) limit of ``resource``."""
        found = system_call("GET", f"/registered_limits?service_id={self.service_id}"
                               f"&resource_name={resource}")["registered_limits"]
        if found:
            system_call("PATCH", f"/registered_limits/{found[0]['id']}",
                    {"registered_limit": {"default_limit": value}})
            return
        system_call("POST", "/registered_limits", {"registered_limits": [{
            "service_id": self.service_id, "region_id": REGION, "resource_name": resource,
            "default_limit": value}]})

    def limit(self, project_id: str, resource: str, value: int) -> None:
        """Set ``project_id``'s own limit of ``resource`` (overriding the registered one)."""
        found = system_call("GET", f"/limits?service_id={self.service_id}&project_id={project_id}"
                               f"&resource_name={resource}")["limits"]
        if found:
            system_call("PATCH", f"/limits/{found[0]['id']}", {"limit": {"resource_limit": value}})
            return
        system_call("POST", "/limits", {"limits": [{
            "service_id": self.service_id, "project_id": project_id, "region_id": REGION,
            "resource_name": resource, "resource_limit": value}]})

    def remove(self) -> None:
        """Delete its limits, endpoint and service."""
        for entry in system_call("GET", f"/limits?service_id={self.service_id}")["limits"]:
            system_call("DELETE", f"/limits/{entry['id']}")
        for entry in system_call("GET", f"/registered_limits?service_id={self.service_id}"
                             )["registered_limits"]:
            system_call("DELETE", f"/registered_limits/{entry['id']}")
        system_call("DELETE", f"/endpoints/{self.endpoint_id}")
        system_call("DELETE", f"/services/{self.service_id}")


def limits_missing() -> str | None:
    """Why unified-limit tests cannot run (None when they can): glimpse's service user needs
    the system reader role (scripts/keystone provision grants it)."""
    reason = _identity_reason()
    if reason:
        return reason
    user = session.Session(auth=v3.Password(
        auth_url=AUTH_URL, username=USER, password=PASSWORD, user_domain_name="Default",
        system_scope="all"))
    try:
        roles = set(user.auth.get_access(user).role_names or ())
    except ks_exceptions.ClientException as exc:
        return f"glimpse's service user cannot get a system-scoped token ({exc}): run " \
               "scripts/keystone provision from this tree (it grants system reader)"
    if "reader" not in roles:
        return f"glimpse's service user lacks system reader (has {sorted(roles)}): run " \
               "scripts/keystone provision from this tree"
    return None


def require_limits() -> None:
    reason = limits_missing()
    if reason:
        pytest.skip(reason)
