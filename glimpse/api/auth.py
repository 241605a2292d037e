"""Identity: turns a request's headers into a Principal. Nothing else reads identity headers.

Two modes (the setting auth_strategy): ``TrustedHeaders`` here ("noauth"), and
``KeystoneTokens`` (glimpse.api.keystone_auth, "keystone").
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response

from glimpse.domain.fields import MAX_KEY_LENGTH
from glimpse.domain.model import Principal
from glimpse.domain.policy import DEFAULT_POLICY, Policy
from glimpse.errors import Invalid


class Authenticator(Protocol):
    async def principal(self, request: Request) -> Principal:
        """The caller of a routed request, before its body is read. Raises ``Refusal``
        (an answer of the identity layer's own, like keystonemiddleware's 401) or a domain
        error (rendered by the request's API version)."""
        ...


class Refusal(Exception):
    """The identity layer answers the request itself: its response does not depend on the
    API version (keystonemiddleware answers before any service code runs)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


# Keystone's default role implications (keystone-manage bootstrap): a token lists the implied
# roles too, so a member holds reader. Trusted headers name roles as a person writes them; they
# are completed the same way, so that "X-Roles: member" may read as a member's token may.
IMPLIED_ROLES = {"admin": ("manager", "member", "reader"), "manager": ("member", "reader"),
                 "member": ("reader",)}
# What a request without identity headers holds: the admin role, and no project.
ANONYMOUS_ROLES = ("admin", "manager", "member", "reader")


def with_implied(roles: tuple[str, ...]) -> tuple[str, ...]:
    """``roles`` and the roles they imply, in order, without repeats."""
    out = dict.fromkeys(roles)
    for role in roles:
        out.update(dict.fromkeys(IMPLIED_ROLES.get(role, ())))
    return tuple(out)


class TrustedHeaders:
    """The "noauth" mode of spec §2.1: trust X-Tenant-Id / X-User-Id / X-Roles as sent. Glance's
    rules apply to the roles named (with the roles Keystone would imply).

    A request with none of them holds the admin role without a project, as in the reference's
    unauthenticated pipeline: an administrator as long as ``context_is_admin`` keeps its
    default (an operator who changes that rule takes noauth's anonymous admin away too).
    Only for development, tests and deployments behind a trusted proxy.
    """

    IDENTITY_HEADERS = ("x-tenant-id", "x-project-id", "x-user-id", "x-roles")

    def __init__(self, owner_is_tenant: bool = True, policy: Policy = DEFAULT_POLICY) -> None:
        self._owner_is_tenant = owner_is_tenant
        self._policy = policy

    async def principal(self, request: Request) -> Principal:
        headers = request.headers
        if not any(h in headers for h in self.IDENTITY_HEADERS):
            return self._policy.admitted(Principal(
                tenant=None, user=None, roles=ANONYMOUS_ROLES, is_admin=False, owner=None))
        tenant = headers.get("x-tenant-id") or headers.get("x-project-id") or None
        user = headers.get("x-user-id") or None
        for value in (tenant, user):
            if value is not None and len(value) > MAX_KEY_LENGTH:
                raise Invalid("Identity header values can't exceed 255 characters")
        roles = with_implied(tuple(
            r.strip().lower() for r in headers.get("x-roles", "").split(",") if r.strip()
        ))
        return self._policy.admitted(Principal(
            tenant=tenant,
            user=user,
            roles=roles,
            is_admin=False,  # the context_is_admin rule's (Policy.admitted)
            owner=tenant if self._owner_is_tenant else user,
        ))
