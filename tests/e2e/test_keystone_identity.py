"""auth_strategy keystone against the real Keystone of scripts/keystone (docs/identity.md):
real ``glimpse serve`` processes, real tokens of users in different projects.

Every server here logs at debug level, and after every test its log must hold no token and no
password (spec identity.md §7.13).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests import keystone
from tests.e2e.server import GlimpseServer
from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.e2e

UNAUTHORIZED = {"error": {"code": 401, "title": "Unauthorized",
                          "message": "The request you have made requires authentication."}}
CHALLENGE = f'Keystone uri="{keystone.AUTH_URL}"'
# Every identity header a client could forge (keystonemiddleware's list, plus the system scope
# header it does not strip).
FORGED = {"X-Roles": "admin", "X-Role": "admin", "X-Service-Roles": "service,admin",
          "X-Identity-Status": "Confirmed", "X-Service-Identity-Status": "Confirmed",
          "OpenStack-System-Scope": "all", "X-Is-Admin-Project": "True",
          "X-User": "admin", "X-User-Name": "admin"}


@dataclasses.dataclass(frozen=True)
class Account:
    name: str
    password: str
    user_id: str
    project: str  # its project's name
    project_id: str

    def token(self) -> str:
        return keystone.token_for(self.name, self.password, self.project)

    def session(self) -> ks_session.Session:
        return keystone.password_session(self.name, self.password, self.project)


@dataclasses.dataclass(frozen=True)
class Accounts:
    alice: Account  # member of project a
    bob: Account  # member of project b
    nova: Account  # a service: the service role, in the service project
    admin: Account

    @property
    def passwords(self) -> list[str]:
        return [a.password for a in (self.alice, self.bob, self.nova, self.admin)]


def _account(name: str, project: str, *roles: str) -> Account:
    password = f"{name}-Pw-{'x7Qz' * 2}"  # distinctive: searched for in logs
    project_id = keystone.ensure_project(project)
    user_id = keystone.ensure_user(name, password, project_id, *roles)
    return Account(name, password, user_id, project, project_id)


@pytest.fixture(scope="module")
def accounts() -> Accounts:
    keystone.require_identity()
    admin_project = keystone.ensure_project(keystone.ADMIN_PROJECT)
    admin_id = keystone.admin().get_user_id()
    return Accounts(
        alice=_account("glimpse-e2e-alice", "glimpse-e2e-a", "member"),
        bob=_account("glimpse-e2e-bob", "glimpse-e2e-b", "member"),
        nova=_account("glimpse-e2e-nova", keystone.PROJECT, "service"),
        admin=Account(keystone.ADMIN_USER, keystone.ADMIN_PASSWORD, str(admin_id),
                      keystone.ADMIN_PROJECT, admin_project),
    )


class Servers:
    """Keystone-mode servers at log level debug; their logs are checked after each test."""

    def __init__(self) -> None:
        self.started: list[GlimpseServer] = []

    def start(self, **settings: object) -> GlimpseServer:
        server = GlimpseServer(keystone.glimpse_settings(log_level="debug", **settings))
        self.started.append(server)
        return server

    def assert_no_secrets(self, secrets: list[str]) -> None:
        for server in self.started:
            log = server.log()
            assert keystone.TOKEN_MARK not in log, "a token reached the log"
            for secret in (keystone.PASSWORD, *secrets):
                assert secret not in log, "a password reached the log"


@pytest.fixture(scope="module")
def servers(accounts: Accounts) -> Iterator[Servers]:
    found = Servers()
    yield found
    for server in found.started:
        server.stop()


@pytest.fixture(scope="module")
def server(servers: Servers) -> GlimpseServer:
    """The shared keystone-mode server (default cache)."""
    return servers.start()


@pytest.fixture(autouse=True)
def no_secrets_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "servers" in request.fixturenames:
        servers: Servers = request.getfixturevalue("servers")
        accounts: Accounts = request.getfixturevalue("accounts")
        servers.assert_no_secrets(accounts.passwords)


def call(server: GlimpseServer, method: str, path: str, token: str | None = None,
         **headers: str) -> httpx.Response:
    sent = dict(headers)
    if token is not None:
        sent["X-Auth-Token"] = token
    return httpx.request(method, server.url + path, headers=sent, timeout=30)


def create(server: GlimpseServer, token: str, **headers: str) -> dict[str, Any]:
    answer = call(server, "POST", "/v1/images", token,
                  **{"x-image-meta-name": f"ks-{uuid.uuid4().hex[:8]}", **headers})
    assert answer.status_code == 201, answer.text
    image: dict[str, Any] = answer.json()["image"]
    return image


def assert_401(answer: httpx.Response) -> None:
    assert answer.status_code == 401, answer.text
    assert answer.headers["www-authenticate"] == CHALLENGE
    if answer.request.method != "HEAD":
        assert answer.json() == UNAUTHORIZED


# --- answers ---------------------------------------------------------------------------------

def test_no_token_bad_token_401(server: GlimpseServer) -> None:
    assert_401(call(server, "GET", "/v1/images"))
    assert_401(call(server, "GET", "/v1/images", "gAAAAABnot-a-real-token"))
    assert_401(call(server, "HEAD", "/v1/images/" + str(uuid.uuid4()), "garbage"))
    assert_401(call(server, "POST", "/v1/images", "x" * 10000))


def test_versions_stay_open(server: GlimpseServer) -> None:
    assert call(server, "GET", "/versions").status_code == 200
    assert call(server, "GET", "/").status_code == 300


def test_a_401_does_not_consume_the_upload(server: GlimpseServer) -> None:
    """Validation comes before the body: a refused upload's data is never read or stored."""
    answer = httpx.post(server.url + "/v1/images", content=b"x" * (1 << 20), timeout=30,
                        headers={"X-Auth-Token": "bad", "x-image-meta-name": "never",
                                 "x-image-meta-disk_format": "raw",
                                 "x-image-meta-container_format": "bare",
                                 "Content-Type": "application/octet-stream"})
    assert_401(answer)


# --- the Principal: owner and visibility by project --------------------------------------------

def test_owner_is_the_tokens_project_and_projects_are_apart(
        server: GlimpseServer, accounts: Accounts) -> None:
    alice, bob = accounts.alice.token(), accounts.bob.token()
    image = create(server, alice)
    assert image["owner"] == accounts.alice.project_id
    assert image["is_public"] is False
    path = f"/v1/images/{image['id']}"
    assert call(server, "HEAD", path, alice).status_code == 200
    assert call(server, "HEAD", path, bob).status_code == 404
    listed = call(server, "GET", "/v1/images/detail", bob).json()["images"]
    assert image["id"] not in {i["id"] for i in listed}
    mine = call(server, "GET", "/v1/images/detail", alice).json()["images"]
    assert image["id"] in {i["id"] for i in mine}
    # The admin role (of any project) is an administrator.
    assert call(server, "HEAD", path, accounts.admin.token()).status_code == 200
    # Only the owner's project changes it.
    assert call(server, "PUT", path, bob, **{"x-image-meta-name": "x"}).status_code == 404
    assert call(server, "DELETE", path, alice).status_code == 200


def test_forged_identity_headers_are_ignored(server: GlimpseServer, accounts: Accounts) -> None:
    alice = accounts.alice
    image = create(server, alice.token())
    forged = {**FORGED, "X-Tenant-Id": alice.project_id, "X-Project-Id": alice.project_id,
              "X-User-Id": alice.user_id, "X-Tenant": alice.project_id,
              "X-Domain-Id": "default", "X-Project-Domain-Id": "default"}
    bob = accounts.bob.token()
    path = f"/v1/images/{image['id']}"
    assert call(server, "HEAD", path, bob, **forged).status_code == 404
    # Not an administrator either: only admins publicize images.
    answer = call(server, "POST", "/v1/images", bob,
                  **{**forged, "x-image-meta-name": "pub", "x-image-meta-is_public": "true"})
    assert answer.status_code == 403, answer.text
    own = create(server, bob, **forged)
    assert own["owner"] == accounts.bob.project_id
    # Without a token, forged headers are nothing.
    assert_401(call(server, "GET", "/v1/images", None, **forged))
    assert_401(call(server, "HEAD", path, None, **forged))


def test_domain_system_and_unscoped_tokens_are_403(
        server: GlimpseServer, accounts: Accounts) -> None:
    alice = accounts.alice
    member = keystone.ensure_user(alice.name, alice.password)  # its id
    role = keystone._find_or_create("roles", "role", {"name": "member"}, name="member")
    keystone.admin().put(f"{keystone.AUTH_URL}/domains/default/users/{member}/roles/{role}")
    domain = ks_session.Session(auth=v3.Password(
        auth_url=keystone.AUTH_URL, username=alice.name, password=alice.password,
        user_domain_id="default", domain_id="default")).get_token()
    system = ks_session.Session(auth=v3.Password(
        auth_url=keystone.AUTH_URL, username=keystone.ADMIN_USER,
        password=keystone.ADMIN_PASSWORD, user_domain_id="default",
        system_scope="all")).get_token()
    unscoped = ks_session.Session(auth=v3.Password(
        auth_url=keystone.AUTH_URL, username=alice.name, password=alice.password,
        user_domain_id="default", unscoped=True)).get_token()
    for token in (domain, system, unscoped):
        for method, path in (("GET", "/v1/images"), ("POST", "/v1/images"),
                             ("GET", "/v2/images")):
            answer = call(server, method, path, str(token), **{"x-image-meta-name": "x"})
            assert answer.status_code == 403, (method, answer.text)


def test_trust_scoped_token_acts_for_the_trustors_project(
        server: GlimpseServer, accounts: Accounts) -> None:
    alice, bob = accounts.alice, accounts.bob
    trust = alice.session().post(f"{keystone.AUTH_URL}/OS-TRUST/trusts", json={"trust": {
        "trustor_user_id": alice.user_id, "trustee_user_id": bob.user_id,
        "project_id": alice.project_id, "impersonation": False,
        "roles": [{"name": "member"}]}}).json()["trust"]
    try:
        token = ks_session.Session(auth=v3.Password(
            auth_url=keystone.AUTH_URL, username=bob.name, password=bob.password,
            user_domain_id="default", trust_id=trust["id"])).get_token()
        image = create(server, str(token))
        assert image["owner"] == alice.project_id
        assert call(server, "HEAD", f"/v1/images/{image['id']}",
                    alice.token()).status_code == 200
    finally:
        alice.session().delete(f"{keystone.AUTH_URL}/OS-TRUST/trusts/{trust['id']}")


# --- application credentials -----------------------------------------------------------------

def _app_credential(account: Account, **fields: Any) -> tuple[str, Callable[[], None]]:
    """A token of a new application credential of ``account``, and how to delete it."""
    base = f"{keystone.AUTH_URL}/users/{account.user_id}/application_credentials"
    owner = account.session()
    cred = owner.post(base, json={"application_credential": {
        "name": f"glimpse-e2e-{uuid.uuid4().hex[:8]}", **fields}}).json()["application_credential"]
    token = ks_session.Session(auth=v3.ApplicationCredential(
        auth_url=keystone.AUTH_URL, application_credential_id=cred["id"],
        application_credential_secret=cred["secret"])).get_token()
    return str(token), lambda: owner.delete(f"{base}/{cred['id']}")


def test_application_credential_member_only(server: GlimpseServer, accounts: Accounts) -> None:
    token, delete = _app_credential(accounts.alice, roles=[{"name": "member"}])
    try:
        assert call(server, "GET", "/v1/images", token).status_code == 200
        assert create(server, token)["owner"] == accounts.alice.project_id
    finally:
        delete()


def test_application_credential_access_rules(server: GlimpseServer, accounts: Accounts) -> None:
    rules = [{"service": "image", "method": "GET", "path": "/v1/images"},
             {"service": "image", "method": "GET", "path": "/v1/images/**"}]
    token, delete = _app_credential(accounts.alice, access_rules=rules)
    try:
        assert call(server, "GET", "/v1/images", token).status_code == 200
        assert call(server, "GET", "/v1/images/detail", token).status_code == 200
        assert_401(call(server, "POST", "/v1/images", token, **{"x-image-meta-name": "no"}))
        assert_401(call(server, "HEAD", f"/v1/images/{uuid.uuid4()}", token))
    finally:
        delete()
    other, delete = _app_credential(
        accounts.alice, access_rules=[{"service": "compute", "method": "GET",
                                       "path": "/v1/images"}])
    try:
        assert_401(call(server, "GET", "/v1/images", other))
    finally:
        delete()


# --- service tokens: expired user tokens -------------------------------------------------------

def test_expired_user_token_needs_a_service_role_token(
        server: GlimpseServer, accounts: Accounts) -> None:
    # Keystone caps a token's expiry at its application credential's: a token about to expire.
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    token, delete = _app_credential(accounts.alice,
                                    expires_at=soon.strftime("%Y-%m-%dT%H:%M:%S"))
    try:
        assert call(server, "GET", "/v1/images", token).status_code == 200  # now cached
        time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)
        # Never kept past its expiry, whatever the cache time.
        assert_401(call(server, "GET", "/v1/images", token))
        service = accounts.nova.token()
        answer = call(server, "GET", "/v1/images", token, **{"X-Service-Token": service})
        assert answer.status_code == 200, answer.text
        image = create(server, token, **{"X-Service-Token": service})
        assert image["owner"] == accounts.alice.project_id
        # A member's token is no service token: refused, not merely not enough.
        bob = accounts.bob.token()
        assert_401(call(server, "GET", "/v1/images", token, **{"X-Service-Token": bob}))
        assert_401(call(server, "GET", "/v1/images", accounts.alice.token(),
                        **{"X-Service-Token": bob}))
        assert_401(call(server, "GET", "/v1/images", token, **{"X-Service-Token": "bad"}))
    finally:
        delete()


def test_valid_user_and_service_tokens(server: GlimpseServer, accounts: Accounts) -> None:
    answer = call(server, "GET", "/v1/images", accounts.alice.token(),
                  **{"X-Service-Token": accounts.nova.token()})
    assert answer.status_code == 200


# --- revocation and the cache ------------------------------------------------------------------

def test_revocation_at_once_with_the_cache_off(servers: Servers, accounts: Accounts) -> None:
    uncached = servers.start(token_cache_time=0)
    token = accounts.alice.token()
    assert call(uncached, "GET", "/v1/images", token).status_code == 200
    keystone.revoke(token)
    assert_401(call(uncached, "GET", "/v1/images", token))


def test_revocation_within_the_cache_time(servers: Servers, accounts: Accounts) -> None:
    cached = servers.start(token_cache_time=5)
    token = accounts.alice.token()
    assert call(cached, "GET", "/v1/images", token).status_code == 200
    validated_at = time.monotonic()  # the entry lives 5 s from (about) here
    keystone.revoke(token)
    assert call(cached, "GET", "/v1/images", token).status_code == 200  # from the cache
    time.sleep(max(0.0, 5.2 - (time.monotonic() - validated_at)))
    assert_401(call(cached, "GET", "/v1/images", token))


# --- Keystone down -------------------------------------------------------------------------------

@pytest.fixture
def keystone_proxy() -> Iterator[FaultProxy]:
    proxy = FaultProxy(keystone.PORT)
    yield proxy
    proxy.close()


@pytest.mark.serial
@pytest.mark.parametrize("fault", ["refuse", "503", "stall"])
def test_keystone_down_is_503_and_cached_tokens_keep_working(
        servers: Servers, accounts: Accounts, keystone_proxy: FaultProxy, fault: str) -> None:
    server = servers.start(keystone_auth_url=keystone_proxy.url + "/v3", keystone_timeout=1)
    known, new = accounts.alice.token(), accounts.bob.token()
    assert call(server, "GET", "/v1/images", known).status_code == 200
    keystone_proxy.set_mode(fault)
    try:
        assert call(server, "GET", "/v1/images", known).status_code == 200
        started = time.monotonic()
        answer = call(server, "GET", "/v1/images", new)
        assert time.monotonic() - started < 5  # keystone_timeout, not the client's

        assert answer.status_code == 503, answer.text
        assert int(answer.headers["retry-after"]) > 0
        assert "www-authenticate" not in answer.headers
        assert new not in answer.text
    finally:
        keystone_proxy.set_mode("pass")
    assert call(server, "GET", "/v1/images", new).status_code == 200


@pytest.mark.serial
def test_starts_while_keystone_is_down(servers: Servers, accounts: Accounts,
                                       keystone_proxy: FaultProxy) -> None:
    keystone_proxy.set_mode("refuse")
    server = servers.start(keystone_auth_url=keystone_proxy.url + "/v3", keystone_timeout=1)
    token = accounts.alice.token()
    assert call(server, "GET", "/v1/images", token).status_code == 503
    keystone_proxy.set_mode("pass")
    assert call(server, "GET", "/v1/images", token).status_code == 200


# --- the start-up check ----------------------------------------------------------------------

def _serve_exit(accounts: Accounts, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env["GLIMPSE_DATA_DIR"] = f"/tmp/glimpse-e2e-ks-{uuid.uuid4().hex}"
    for name, value in keystone.glimpse_settings(log_level="debug", **settings).items():
        env[f"GLIMPSE_{name.upper()}"] = value
    return subprocess.run([sys.executable, "-m", "glimpse", "serve", "--port", "1"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_a_service_user_without_the_service_role_does_not_start(accounts: Accounts) -> None:
    member = _account("glimpse-e2e-member-only", keystone.PROJECT, "member")
    done = _serve_exit(accounts, keystone_username=member.name,
                       keystone_password=member.password)
    assert done.returncode == 2, done.stderr
    assert "configuration error" in done.stderr
    assert "may not validate tokens" in done.stderr and "service role" in done.stderr
    assert member.password not in done.stdout + done.stderr


def test_wrong_service_credentials_do_not_start(accounts: Accounts) -> None:
    wrong = "Wrong-pw-never-log-me"
    done = _serve_exit(accounts, keystone_password=wrong)
    assert done.returncode == 2, done.stderr
    assert "refuses glimpse's service credentials" in done.stderr
    assert wrong not in done.stdout + done.stderr


# --- the real client ---------------------------------------------------------------------------

def test_glanceclient_with_password_and_application_credential_sessions(
        server: GlimpseServer, accounts: Accounts) -> None:
    glanceclient = pytest.importorskip("glanceclient", reason="python-glanceclient is missing")
    alice = accounts.alice
    password = alice.session()
    # A token revoked before its first use: glimpse's 401 makes the session log in again and
    # retry, as keystoneauth does (so the status must be exactly 401).
    keystone.revoke(str(password.get_token()))
    base = f"{keystone.AUTH_URL}/users/{alice.user_id}/application_credentials"
    cred = password.post(base, json={"application_credential": {
        "name": f"glimpse-e2e-{uuid.uuid4().hex[:8]}"}}).json()["application_credential"]
    credential = ks_session.Session(auth=v3.ApplicationCredential(
        auth_url=keystone.AUTH_URL, application_credential_id=cred["id"],
        application_credential_secret=cred["secret"]))
    try:
        for session in (password, credential):
            client = glanceclient.Client("1", session=session, endpoint_override=server.url)
            # First a request without a body: a streamed body is spent by the refused try.
            list(client.images.list())
            image = client.images.create(name=f"ks-{uuid.uuid4().hex[:8]}", disk_format="raw",
                                         container_format="bare", data=io.BytesIO(b"abc"))
            assert image.owner == alice.project_id and image.status == "active"
            assert b"".join(client.images.data(image.id)) == b"abc"
            assert image.id in {i.id for i in client.images.list()}
            client.images.delete(image.id)
    finally:
        password.delete(f"{base}/{cred['id']}")


# --- v2 ----------------------------------------------------------------------------------------

def test_v2_owner_and_answers(server: GlimpseServer, accounts: Accounts) -> None:
    alice, bob = accounts.alice.token(), accounts.bob.token()
    made = httpx.post(server.url + "/v2/images", json={"name": "ks-v2"}, timeout=30,
                      headers={"X-Auth-Token": alice, **FORGED,
                               "X-Project-Id": accounts.bob.project_id})
    assert made.status_code == 201, made.text
    image = made.json()
    assert image["owner"] == accounts.alice.project_id
    path = f"/v2/images/{image['id']}"
    assert call(server, "GET", path, alice).status_code == 200
    assert call(server, "GET", path, bob, **FORGED).status_code == 404
    # keystonemiddleware's 401, whatever the API version.
    assert_401(call(server, "GET", path))
    assert_401(call(server, "GET", "/v2/images", "garbage", Accept="text/html"))
    assert call(server, "DELETE", path, alice).status_code == 204


# --- glimpse's own credentials fail while it runs ------------------------------------------------

@pytest.mark.serial
def test_refused_service_credentials_at_run_time_are_503_and_say_why(
        servers: Servers, accounts: Accounts, keystone_proxy: FaultProxy) -> None:
    """Keystone refusing glimpse's own credentials while it runs (started while Keystone was
    unreachable, so the start-up check could not catch it; or a password rotated under it) is
    an outage for callers, never a 401 that would make them drop their tokens, and the log says
    what to fix."""
    wrong = "Rotated-pw-never-log-me"
    keystone_proxy.set_mode("refuse")
    server = servers.start(keystone_auth_url=keystone_proxy.url + "/v3", keystone_timeout=2,
                           keystone_password=wrong)
    keystone_proxy.set_mode("pass")
    answer = call(server, "GET", "/v1/images", accounts.alice.token())
    assert answer.status_code == 503, answer.text
    assert "www-authenticate" not in answer.headers
    log = server.log()
    assert "refuses glimpse's service credentials" in log
    assert wrong not in log


# --- hostile input -------------------------------------------------------------------------------

def test_a_flood_of_invalid_tokens_evicts_no_valid_one(
        servers: Servers, accounts: Accounts, keystone_proxy: FaultProxy) -> None:
    server = servers.start(keystone_auth_url=keystone_proxy.url + "/v3", token_cache_size=4,
                           keystone_www_authenticate_uri=keystone.AUTH_URL)
    valid = accounts.alice.token()
    assert call(server, "GET", "/v1/images", valid).status_code == 200

    async def flood() -> list[int]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            answers = await asyncio.gather(*(
                client.get("/v1/images", headers={"X-Auth-Token": f"gAAAAAB{uuid.uuid4().hex}"})
                for _ in range(200)))
        return [a.status_code for a in answers]
    assert set(asyncio.run(flood())) == {401}
    keystone_proxy.set_mode("refuse")  # only the cache can answer now
    assert call(server, "GET", "/v1/images", valid).status_code == 200
    for token in ("a\u00e9b", "x" * 9000, "two words"):
        answer = httpx.get(server.url + "/v1/images", timeout=30,
                           headers=[(b"X-Auth-Token", token.encode())])
        assert_401(answer)  # refused without Keystone (which would make it a 503 now)


def test_several_workers(servers: Servers, accounts: Accounts) -> None:
    """Worker processes get the Keystone settings (the password included) from the parent."""
    server = servers.start(workers=2)
    token = accounts.alice.token()
    for _ in range(6):
        assert call(server, "GET", "/v1/images", token).status_code == 200
    assert_401(call(server, "GET", "/v1/images", "garbage"))
