"""Keystone mode's rules, with a stand-in for Keystone (tests/e2e/test_keystone_identity.py runs
them against the real one): what a token makes of the Principal, which answers are 401, 403 and
503, service tokens, access rules, and what is never sent to Keystone."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request

from glimpse import settings as settings_mod
from glimpse.api.auth import Refusal
from glimpse.api.keystone_auth import KeystoneTokens, ValidToken, _path_pattern
from glimpse.api.keystone_tokens import KeystoneDown
from glimpse.api.token_cache import TokenCache
from glimpse.errors import Forbidden, Invalid

URI = "http://keystone.example:5000/v3"
SOON = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
PAST = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)


def token_data(project: str | None = "p1", roles: tuple[str, ...] = ("member", "reader"),
               expires: dt.datetime = SOON, **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "methods": ["password"],
        "user": {"id": "u1", "name": "alice", "domain": {"id": "default", "name": "Default"}},
        "audit_ids": ["AUDIT1"],
        "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%S.000000Z"),
        "roles": [{"id": f"id-{r}", "name": r} for r in roles],
        **extra,
    }
    if project is not None:
        data["project"] = {"id": project, "name": project,
                           "domain": {"id": "pdom", "name": "PDom"}}
    return data


class FakeKeystone:
    """Answers validations from a table: token -> data (valid), absent (404), or an
    exception to raise. Counts calls."""

    def __init__(self, tokens: dict[str, Any]) -> None:
        self.tokens = tokens
        self.calls: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

    def validate(self, token: str, allow_expired: bool = False) -> dict[str, Any] | None:
        with self.lock:
            self.calls.append((token, allow_expired))
        found = self.tokens.get(token)
        if isinstance(found, Exception):
            raise found
        if found is None:
            return None
        try:
            expires = dt.datetime.fromisoformat(found["expires_at"].replace("Z", "+00:00"))
        except ValueError:
            return dict(found)  # a malformed answer, as Keystone would not give
        expired = expires < dt.datetime.now(dt.UTC)
        return None if expired and not allow_expired else dict(found)


def request(headers: dict[str, str], method: str = "GET", path: str = "/v1/images") -> Request:
    scope = {"type": "http", "method": method, "path": path, "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    return Request(scope)


def auth(keystone: FakeKeystone, ttl: int = 300, **options: Any) -> KeystoneTokens:
    cache: TokenCache[ValidToken] = TokenCache(ttl, 100)
    return KeystoneTokens(keystone, cache, URI, **options)


def principal(authn: KeystoneTokens, headers: dict[str, str], **req: str) -> Any:
    return asyncio.run(authn.principal(request(headers, **req)))


def refusal(authn: KeystoneTokens, headers: dict[str, str], **req: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        principal(authn, headers, **req)
    return caught.value


def assert_401(answer: Refusal) -> None:
    response = answer.response
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == f'Keystone uri="{URI}"'
    assert response.headers["content-type"] == "application/json"
    assert json.loads(bytes(response.body)) == {"error": {
        "code": 401, "title": "Unauthorized",
        "message": "The request you have made requires authentication."}}


def test_principal_is_what_the_token_says() -> None:
    keystone = FakeKeystone({"tok": token_data(roles=("Member", "reader", "admin"))})
    found = principal(auth(keystone), {"X-Auth-Token": "tok"})
    assert (found.tenant, found.project_id, found.owner) == ("p1", "p1", "p1")
    assert (found.user, found.user_id, found.user_domain_id) == ("u1", "u1", "default")
    assert found.project_domain_id == "pdom"
    assert found.roles == ("member", "reader", "admin")
    assert found.is_admin
    assert found.expires_at == SOON.replace(microsecond=0)
    assert found.audit_id == "AUDIT1" and found.service_roles == ()
    assert found.is_admin_project  # Keystone's default when the token does not say


def test_forged_identity_headers_are_ignored() -> None:
    keystone = FakeKeystone({"tok": token_data(roles=("member",))})
    forged = {"X-Auth-Token": "tok", "X-Roles": "admin", "X-Project-Id": "evil",
              "X-Tenant-Id": "evil", "X-User-Id": "root", "X-Service-Roles": "service",
              "X-Identity-Status": "Confirmed", "OpenStack-System-Scope": "all",
              "X-Is-Admin-Project": "True", "X-Domain-Id": "default"}
    found = principal(auth(keystone), forged)
    assert (found.tenant, found.user, found.roles, found.is_admin) == ("p1", "u1", ("member",),
                                                                      False)
    assert found.service_roles == () and found.system_scope is None and found.domain_id is None


@pytest.mark.parametrize("headers", [
    {},
    {"X-Auth-Token": ""},
    {"X-Auth-Token": "   "},
    {"X-Roles": "admin", "X-Tenant-Id": "t", "X-Identity-Status": "Confirmed"},
])
def test_no_token_is_401_without_asking_keystone(headers: dict[str, str]) -> None:
    keystone = FakeKeystone({})
    assert_401(refusal(auth(keystone), headers))
    assert keystone.calls == []


def test_bad_and_expired_tokens_are_401() -> None:
    keystone = FakeKeystone({"old": token_data(expires=PAST)})
    authn = auth(keystone)
    assert_401(refusal(authn, {"X-Auth-Token": "unknown"}))
    assert_401(refusal(authn, {"X-Auth-Token": "old"}))


@pytest.mark.parametrize("token", ["x" * 8193, "tok\u00e9", "tok en", "tok\tx"])
def test_implausible_tokens_are_401_without_asking_keystone(token: str) -> None:
    keystone = FakeKeystone({})
    scope_headers = [(b"x-auth-token", token.encode("utf-8"))]
    req = Request({"type": "http", "method": "GET", "path": "/v1/images", "query_string": b"",
                   "headers": scope_headers})
    authn = auth(keystone)
    with pytest.raises(Refusal) as caught:
        asyncio.run(authn.principal(req))
    assert_401(caught.value)
    assert keystone.calls == []


def test_a_token_is_stripped_and_x_storage_token_works() -> None:
    keystone = FakeKeystone({"tok": token_data()})
    assert principal(auth(keystone), {"X-Auth-Token": "  tok "}).tenant == "p1"
    assert principal(auth(keystone), {"X-Storage-Token": "tok"}).tenant == "p1"


def test_keystone_down_is_503_with_retry_after_and_not_kept() -> None:
    keystone = FakeKeystone({"tok": KeystoneDown("connection refused")})
    authn = auth(keystone)
    answer = refusal(authn, {"X-Auth-Token": "tok"}).response
    assert answer.status_code == 503
    assert int(answer.headers["retry-after"]) > 0
    assert "www-authenticate" not in answer.headers
    assert json.loads(bytes(answer.body))["error"]["code"] == 503
    keystone.tokens["tok"] = token_data()
    assert principal(authn, {"X-Auth-Token": "tok"}).tenant == "p1"


def test_cached_token_works_while_keystone_is_down() -> None:
    keystone = FakeKeystone({"tok": token_data()})
    authn = auth(keystone)
    principal(authn, {"X-Auth-Token": "tok"})
    keystone.tokens = {"tok": KeystoneDown("down"), "new": KeystoneDown("down")}
    assert principal(authn, {"X-Auth-Token": "tok"}).tenant == "p1"
    assert refusal(authn, {"X-Auth-Token": "new"}).response.status_code == 503


def test_hits_do_not_ask_keystone_and_cache_off_asks_every_time() -> None:
    keystone = FakeKeystone({"tok": token_data()})
    cached = auth(keystone)
    for _ in range(5):
        principal(cached, {"X-Auth-Token": "tok"})
    assert len(keystone.calls) == 1
    uncached = auth(keystone, ttl=0)
    for _ in range(5):
        principal(uncached, {"X-Auth-Token": "tok"})
    assert len(keystone.calls) == 6


def test_revocation_applies_at_once_with_the_cache_off() -> None:
    keystone = FakeKeystone({"tok": token_data()})
    authn = auth(keystone, ttl=0)
    principal(authn, {"X-Auth-Token": "tok"})
    del keystone.tokens["tok"]
    assert_401(refusal(authn, {"X-Auth-Token": "tok"}))


def test_concurrent_requests_with_one_new_token_make_one_call() -> None:
    keystone = FakeKeystone({"tok": token_data()})
    authn = auth(keystone)

    async def run() -> None:
        found = await asyncio.gather(*(authn.principal(request({"X-Auth-Token": "tok"}))
                                       for _ in range(20)))
        assert {p.tenant for p in found} == {"p1"}
    asyncio.run(run())
    assert len(keystone.calls) == 1


@pytest.mark.parametrize(("scope", "expected"), [
    ({"domain": {"id": "d1", "name": "D1"}}, "domain_id"),
    ({"system": {"all": True}}, "system_scope"),
    ({}, None),
])
def test_tokens_without_a_project_are_403(scope: dict[str, Any], expected: str | None) -> None:
    keystone = FakeKeystone({"tok": token_data(project=None, roles=("admin",), **scope)})
    with pytest.raises(Forbidden):
        principal(auth(keystone), {"X-Auth-Token": "tok"})


def test_trust_scoped_token_acts_for_the_trustors_project() -> None:
    trust = {"id": "T1", "impersonation": False, "trustor_user": {"id": "trustor"},
             "trustee_user": {"id": "u1"}}
    keystone = FakeKeystone({"tok": token_data(project="trustor-project",
                                               **{"OS-TRUST:trust": trust})})
    found = principal(auth(keystone), {"X-Auth-Token": "tok"})
    assert (found.owner, found.user, found.trust_id, found.trustor_user) == (
        "trustor-project", "u1", "T1", "trustor")


class TestServiceTokens:
    def keystone(self) -> FakeKeystone:
        return FakeKeystone({
            "user": token_data(),
            "expired": token_data(expires=PAST),
            "svc": token_data(project="service", roles=("service",), user={"id": "nova"}),
            "svc-member": token_data(project="service", roles=("member",)),
        })

    def test_an_expired_user_token_passes_with_a_service_role_token(self) -> None:
        keystone = self.keystone()
        found = principal(auth(keystone), {"X-Auth-Token": "expired", "X-Service-Token": "svc"})
        assert found.tenant == "p1" and found.service_roles == ("service",)
        assert found.service_user == "nova" and found.service_project == "service"
        assert ("expired", True) in keystone.calls

    def test_an_expired_user_token_fails_without_one(self) -> None:
        keystone = self.keystone()
        assert_401(refusal(auth(keystone), {"X-Auth-Token": "expired"}))
        assert_401(refusal(auth(keystone, service_token_roles_required=False),
                           {"X-Auth-Token": "expired", "X-Service-Token": "svc-member"}))

    def test_a_service_token_without_a_service_role_is_401_when_required(self) -> None:
        keystone = self.keystone()
        assert_401(refusal(auth(keystone), {"X-Auth-Token": "user",
                                            "X-Service-Token": "svc-member"}))
        relaxed = auth(keystone, service_token_roles_required=False)
        assert principal(relaxed, {"X-Auth-Token": "user",
                                   "X-Service-Token": "svc-member"}).tenant == "p1"

    def test_an_invalid_service_token_is_401(self) -> None:
        keystone = self.keystone()
        for required in (True, False):
            assert_401(refusal(auth(keystone, service_token_roles_required=required),
                               {"X-Auth-Token": "user", "X-Service-Token": "bogus"}))

    def test_an_empty_service_token_header_is_no_service_token(self) -> None:
        keystone = self.keystone()
        found = principal(auth(keystone), {"X-Auth-Token": "user", "X-Service-Token": ""})
        assert found.service_roles == ()

    def test_an_expired_token_validated_for_a_service_is_not_cached(self) -> None:
        keystone = self.keystone()
        authn = auth(keystone)
        principal(authn, {"X-Auth-Token": "expired", "X-Service-Token": "svc"})
        assert_401(refusal(authn, {"X-Auth-Token": "expired"}))


class TestAccessRules:
    def token(self, rules: list[dict[str, str]]) -> dict[str, Any]:
        return token_data(application_credential={"id": "AC1", "name": "ci", "restricted": True,
                                                  "access_rules": rules})

    def test_requests_must_match_a_rule(self) -> None:
        keystone = FakeKeystone({"tok": self.token([
            {"service": "image", "method": "GET", "path": "/v1/images/**"},
            {"service": "image", "method": "HEAD", "path": "/v1/images/{image_id}"},
            {"service": "compute", "method": "POST", "path": "/v1/images"},
        ])})
        authn = auth(keystone)
        found = principal(authn, {"X-Auth-Token": "tok"}, path="/v1/images/detail")
        assert found.application_credential_id == "AC1"
        principal(authn, {"X-Auth-Token": "tok"}, method="HEAD", path="/v1/images/abc")
        assert_401(refusal(authn, {"X-Auth-Token": "tok"}, method="HEAD",
                           path="/v1/images/abc/members"))
        assert_401(refusal(authn, {"X-Auth-Token": "tok"}, method="POST", path="/v1/images"))
        assert_401(refusal(authn, {"X-Auth-Token": "tok"}, path="/v1/images"))

    def test_an_empty_rule_list_allows_nothing(self) -> None:
        keystone = FakeKeystone({"tok": self.token([])})
        assert_401(refusal(auth(keystone), {"X-Auth-Token": "tok"}))

    def test_rules_are_skipped_behind_a_service_token(self) -> None:
        keystone = FakeKeystone({"tok": self.token([]), "svc": token_data(roles=("service",))})
        principal(auth(keystone), {"X-Auth-Token": "tok", "X-Service-Token": "svc"})

    def test_an_unrestricted_credential_needs_no_rule(self) -> None:
        data = token_data(application_credential={"id": "AC2", "name": "x", "restricted": True})
        principal(auth(FakeKeystone({"tok": data})), {"X-Auth-Token": "tok"})

    @pytest.mark.parametrize(("pattern", "path", "matches"), [
        ("/v1/images/*", "/v1/images/abc", True),
        ("/v1/images/*", "/v1/images/abc/members", False),
        ("/v1/images/**", "/v1/images/abc/members", True),
        ("/v1/images/{id}/members", "/v1/images/abc/members", True),
        ("/v1/images/{id}", "/v1/images/", False),
        ("/v1/images.json", "/v1/imagesXjson", False),  # literal, not a regular expression
        ("/v1/images", "/v1/images/abc", False),
    ])
    def test_path_patterns(self, pattern: str, path: str, matches: bool) -> None:
        assert bool(_path_pattern(pattern).fullmatch(path)) is matches


def test_malformed_keystone_answer_is_401() -> None:
    nameless = token_data()
    del nameless["user"]
    keystone = FakeKeystone({"tok": nameless,
                             "when": {**token_data(), "expires_at": "2026-12-05T99:00:00Z"}})
    for token in ("tok", "when"):
        assert_401(refusal(auth(keystone), {"X-Auth-Token": token}))


class TestSettings:
    def load(self, **values: str) -> settings_mod.Settings:
        env = {f"GLIMPSE_{k.upper()}": v for k, v in values.items()}
        return settings_mod.load(None, environ=env)

    def keystone(self, **values: str) -> settings_mod.Settings:
        return self.load(**{"auth_strategy": "keystone", "keystone_auth_url": URI,
                             "keystone_password": "pw", **values})

    def test_defaults_leave_noauth_on(self) -> None:
        settings = self.load()
        assert settings.auth_strategy == "noauth"
        assert settings.token_cache_time == 300
        assert settings.service_token_roles == ("service",)
        assert settings.service_token_roles_required is True

    def test_keystone_settings(self) -> None:
        settings = self.keystone(token_cache_time="0", service_token_roles="service, nova",
                                 service_token_roles_required="false")
        assert settings.token_cache_time == 0
        assert settings.service_token_roles == ("service", "nova")
        assert settings.service_token_roles_required is False
        assert "pw" not in repr(settings)

    @pytest.mark.parametrize(("values", "problem"), [
        ({"keystone_password": ""}, "keystone_password"),
        ({"keystone_auth_url": ""}, "keystone_auth_url"),
        ({"keystone_auth_url": "keystone:5000"}, "http"),
        ({"owner_is_tenant": "false"}, "owner_is_tenant"),
        ({"keystone_timeout": "0"}, "keystone_timeout"),
        ({"service_token_roles": ""}, "service_token_roles"),
    ])
    def test_refused(self, values: dict[str, str], problem: str) -> None:
        with pytest.raises(Invalid, match=problem):
            self.keystone(**values)

    def test_from_a_file(self, tmp_path: Path) -> None:
        path = tmp_path / "glimpse.toml"
        path.write_text('auth_strategy = "keystone"\nkeystone_auth_url = "http://k:5000"\n'
                        'keystone_password = "pw"\nservice_token_roles = ["service", "x"]\n'
                        "token_cache_time = 60\n")
        settings = settings_mod.load(path, environ={})
        assert settings.service_token_roles == ("service", "x")
        assert settings.token_cache_time == 60
        assert settings_mod.from_json(settings_mod.to_json(settings)) == settings


def test_is_admin_is_the_context_is_admin_rule_per_request() -> None:
    """An operator's context_is_admin decides, and a change applies to cached tokens at once
    (the rule is asked per request, not cached with the token)."""
    from glimpse.domain.policy import Policy

    class Rule:
        role = "admin"

        def check(self, rule: str, principal: Any, target: Any) -> bool | None:
            return self.role in principal.roles if rule == "context_is_admin" else None

    operator = Rule()
    keystone = FakeKeystone({"tok": token_data(roles=("admin", "member", "reader")),
                             "cloud": token_data(roles=("cloud_admin", "member", "reader"))})
    authn = auth(keystone, policy=Policy(operator))
    assert principal(authn, {"X-Auth-Token": "tok"}).is_admin
    assert not principal(authn, {"X-Auth-Token": "cloud"}).is_admin
    operator.role = "cloud_admin"
    assert not principal(authn, {"X-Auth-Token": "tok"}).is_admin
    assert principal(authn, {"X-Auth-Token": "cloud"}).is_admin
