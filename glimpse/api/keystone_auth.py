"""The "keystone" mode of auth_strategy: every routed request's X-Auth-Token is validated
against Keystone, the way keystonemiddleware's auth_token does it (spec identity.md §1), natively
on the event loop with a cache, and the Principal is built from Keystone's answer alone.

Identity headers a client sends (X-Roles, X-Project-Id, X-Tenant-Id, X-User-Id, X-Service-Roles,
X-Identity-Status, OpenStack-System-Scope, ...) are never read here: only the two tokens are.

Answers of its own (``Refusal``), identical for every API version, as keystonemiddleware's:
401 with ``WWW-Authenticate: Keystone uri="..."`` and its JSON body for a missing, bad or expired
token; 503 with ``Retry-After`` when Keystone cannot tell. Tokens with no project (domain-,
system-scoped, unscoped) are valid but may not use the image APIs: ``Forbidden``, rendered by
the request's API version as Glance's policy refusal is.

Tokens are never logged: a log line names one by the first 8 characters of its SHA-256 and by
its audit id.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response

from glimpse.api.auth import Refusal
from glimpse.api.keystone_tokens import KeystoneDown
from glimpse.api.token_cache import Loaded, TokenCache, token_key
from glimpse.domain.model import Principal
from glimpse.domain.policy import DEFAULT_POLICY, SCOPE_MESSAGE, Policy
from glimpse.errors import Forbidden

log = logging.getLogger(__name__)

# Fernet tokens are about 200 characters, JWS tokens under 1 KiB; anything much longer, or with
# characters no token holds, is refused without asking Keystone.
MAX_TOKEN_LENGTH = 8192
_TOKEN_CHARACTERS = re.compile(r"[!-~]+")
# Keystone calls draw from a pool of their own: an outage (each call waiting out the timeout)
# must not hold every worker thread the metadata requests need.
MAX_CONCURRENT_VALIDATIONS = 16
RETRY_AFTER_SECONDS = 5
UNAUTHORIZED_MESSAGE = "The request you have made requires authentication."
UNAVAILABLE_MESSAGE = "The Keystone service is temporarily unavailable."


class TokenValidator(Protocol):
    """What KeystoneTokens asks of Keystone (glimpse.api.keystone_tokens.IdentityServer):
    blocking, run in a worker thread."""

    def validate(self, token: str, allow_expired: bool = False) -> dict[str, Any] | None: ...


@dataclasses.dataclass(frozen=True)
class AccessRule:
    """One access rule of an application credential: the requests its tokens may make."""

    service: str
    method: str
    path: re.Pattern[str]


@dataclasses.dataclass(frozen=True)
class ValidToken:
    """What the cache keeps of one validated token."""

    principal: Principal  # as the user token of a request
    expires_at: float  # seconds since the epoch
    # None: no restriction. An application credential's rules (an empty tuple allows nothing).
    access_rules: tuple[AccessRule, ...] | None


class KeystoneTokens:
    def __init__(
        self,
        server: TokenValidator,
        cache: TokenCache[ValidToken],
        www_authenticate_uri: str,
        service_type: str = "image",
        service_token_roles: Sequence[str] = ("service",),
        service_token_roles_required: bool = True,
        policy: Policy = DEFAULT_POLICY,
    ) -> None:
        self._server = server
        self._policy = policy
        self.cache = cache
        self._challenge = f'Keystone uri="{www_authenticate_uri}"'
        self._service_type = service_type
        self._service_token_roles = frozenset(r.lower() for r in service_token_roles)
        self._service_token_roles_required = service_token_roles_required
        self._limiter: anyio.CapacityLimiter | None = None

    async def principal(self, request: Request) -> Principal:
        try:
            return await self._principal(request)
        except KeystoneDown:
            raise Refusal(self._unavailable()) from None

    async def _principal(self, request: Request) -> Principal:
        headers = request.headers
        service_token = headers.get("x-service-token")
        user_token = headers.get("x-auth-token") or headers.get("x-storage-token")
        service: ValidToken | None = None
        allow_expired = False
        if service_token:
            service = await self._validated(service_token.strip(), allow_expired=False)
            if service is None:
                raise self._unauthorized("invalid service token")
            role_check = bool(self._service_token_roles & set(service.principal.roles))
            if self._service_token_roles_required and not role_check:
                raise self._unauthorized(
                    f"service token {_name(service)} holds none of the service token roles")
            # Only a service token with a service role lets an expired user token through.
            allow_expired = role_check
        if not user_token:
            raise self._unauthorized("no user token")
        user = await self._validated(user_token.strip(), allow_expired)
        if user is None:
            raise self._unauthorized("invalid user token")
        # A service token marks a chain of services acting for the user: the user's
        # application-credential rules applied to the first request of the chain.
        if service is None and not self._allowed(user, request):
            raise self._unauthorized(f"token {_name(user)}: its application credential's "
                                     f"access rules do not allow {request.method} "
                                     f"{request.url.path}")
        principal = user.principal
        if principal.tenant is None:
            # Glance's rules are all project-scoped (scope_types=['project']): a domain- or
            # system-scoped token fails every rule (the policy's scope check), and an unscoped
            # one holds no roles; all are refused here at once, whatever the request.
            raise Forbidden(SCOPE_MESSAGE)
        if service is not None:
            principal = dataclasses.replace(
                principal, service_roles=service.principal.roles,
                service_user=service.principal.user, service_project=service.principal.tenant)
        # is_admin is the context_is_admin rule's, asked per request (not cached with the
        # token), so that an operator's change of the rule applies at once.
        return self._policy.admitted(principal)

    async def _validated(self, token: str, allow_expired: bool) -> ValidToken | None:
        if len(token) > MAX_TOKEN_LENGTH or not _TOKEN_CHARACTERS.fullmatch(token):
            return None
        key = token_key(token)
        found = self.cache.get(key)  # never past the token's expiry
        if found is not None:
            return found
        # Loads of an expired token (allow_expired) are shared apart from the others, whose
        # waiters must not receive one; their results are not kept (past their expiry).
        flight = "allow-expired:" + key if allow_expired else key
        return await self.cache.get_or_load(
            flight, lambda: self._load(token, key, allow_expired))

    async def _load(self, token: str, key: str, allow_expired: bool) -> Loaded[ValidToken] | None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT_VALIDATIONS)
        try:
            data = await anyio.to_thread.run_sync(
                self._server.validate, token, allow_expired, limiter=self._limiter)
        except KeystoneDown as exc:
            log.error("cannot validate token %s: %s", key[:8], exc)
            raise
        if data is None:
            log.info("Keystone does not accept token %s", key[:8])
            return None
        try:
            valid = valid_token(data)
        except (KeyError, TypeError, ValueError, AttributeError):
            log.warning("Keystone's answer for token %s is not a token it could have issued",
                        key[:8])
            return None
        lifetime = valid.expires_at - time.time()
        if lifetime <= 0 and not allow_expired:
            log.info("token %s has expired", key[:8])
            return None
        log.debug("token %s (%s) is valid for %.0f s", key[:8], _name(valid), lifetime)
        return Loaded(valid, lifetime)

    def _allowed(self, token: ValidToken, request: Request) -> bool:
        rules = token.access_rules
        if rules is None:
            return True
        path = request.url.path
        return any(rule.method == request.method and rule.service == self._service_type
                   and rule.path.fullmatch(path) for rule in rules)

    def _unauthorized(self, why: str) -> Refusal:
        log.info("answering 401: %s", why)
        body = {"error": {"code": 401, "title": "Unauthorized", "message": UNAUTHORIZED_MESSAGE}}
        return Refusal(_json(401, body, [(b"www-authenticate", self._challenge.encode())]))

    def _unavailable(self) -> Response:
        body = {"error": {"code": 503, "title": "Service Unavailable",
                          "message": UNAVAILABLE_MESSAGE}}
        return _json(503, body, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])


def valid_token(data: Mapping[str, Any]) -> ValidToken:
    """A Keystone v3 ``token`` object as glimpse keeps it. Roles come as Keystone lists them,
    implied roles included (a member holds reader too); lower-cased as Glance does."""
    user = data["user"]
    project = data.get("project")
    domain = data.get("domain")
    trust = data.get("OS-TRUST:trust")
    app_credential = data.get("application_credential")
    roles = tuple(dict.fromkeys(str(role["name"]).lower() for role in data.get("roles", ())))
    expires_at = _timestamp(data["expires_at"])
    project_id = str(project["id"]) if project else None
    principal = Principal(
        tenant=project_id,
        user=str(user["id"]),
        roles=roles,
        is_admin=False,  # the context_is_admin rule's, per request (KeystoneTokens.principal)
        owner=project_id,
        user_domain_id=_id_of(user.get("domain")),
        project_domain_id=_id_of(project.get("domain")) if project else None,
        domain_id=_id_of(domain),
        system_scope="all" if (data.get("system") or {}).get("all") else None,
        expires_at=dt.datetime.fromtimestamp(expires_at, dt.UTC),
        is_admin_project=bool(data.get("is_admin_project", True)),
        trust_id=_id_of(trust),
        trustor_user=_id_of(trust.get("trustor_user")) if trust else None,
        application_credential_id=_id_of(app_credential),
        audit_id=next(iter(data.get("audit_ids") or ()), None),
    )
    rules = None
    if app_credential and app_credential.get("access_rules") is not None:
        rules = tuple(AccessRule(str(r["service"]), str(r["method"]), _path_pattern(str(r["path"])))
                      for r in app_credential["access_rules"])
    return ValidToken(principal, expires_at, rules)


def _path_pattern(pattern: str) -> re.Pattern[str]:
    """An access rule's path as keystonemiddleware matches it: ``{name}`` and ``*`` stand for
    one path segment, ``**`` for any run of characters, the rest is literal."""
    parts = []
    for found in re.finditer(r"(\{[^}]*\})|(\*\*)|(\*)|([^{}*]+)|(.)", pattern):
        tag, any_run, star, literal, stray = found.groups()
        if tag or star:
            parts.append(r"[^/]+")
        elif any_run:
            parts.append(".*")
        else:
            parts.append(re.escape(literal or stray))
    return re.compile("".join(parts))


def _timestamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _id_of(item: Any) -> str | None:
    return str(item["id"]) if isinstance(item, Mapping) and "id" in item else None


def _name(token: ValidToken) -> str:
    principal = token.principal
    return f"audit {principal.audit_id}, user {principal.user}"


def _json(status: int, document: Any, headers: list[tuple[bytes, bytes]]) -> Response:
    response = Response(json.dumps(document).encode(), status_code=status,
                        media_type="application/json")
    response.raw_headers.extend(headers)
    return response
