"""Keystone's token validation API (``GET /v3/auth/tokens``), spoken with glimpse's own service
credentials through keystoneauth1. Blocking: called in a worker thread.

What Keystone answers becomes one of three things: the token's data (valid), None (Keystone
does not know the token: bad, expired or revoked), or ``KeystoneDown`` (no usable answer, so
glimpse cannot tell: a 503 for the caller, never a 401, which would make clients drop a good
token, and never a pass).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from glimpse.errors import Invalid

log = logging.getLogger(__name__)

# Roles Keystone's default ``identity:validate_token`` policy lets validate others' tokens
# (besides a system-scoped reader).
VALIDATING_ROLES = frozenset({"service", "admin"})


class KeystoneDown(Exception):
    """Keystone gave no usable answer: unreachable, too slow, failing, or refusing glimpse's
    own credentials. The message names the problem and holds no secret."""


@dataclasses.dataclass(frozen=True)
class ServiceCredentials:
    """How glimpse authenticates to Keystone: its service user (the settings keystone_*)."""

    auth_url: str
    username: str
    password: str = dataclasses.field(repr=False)
    user_domain_name: str = "Default"
    project_name: str = "service"
    project_domain_name: str = "Default"

    @property
    def identity_url(self) -> str:
        """The v3 API root (``auth_url`` may be given with or without its ``/v3``)."""
        url = self.auth_url.rstrip("/")
        return url if url.endswith("/v3") else url + "/v3"

    def describe(self) -> str:
        return (f"user {self.username!r} (domain {self.user_domain_name!r}) in project "
                f"{self.project_name!r} (domain {self.project_domain_name!r}) at "
                f"{self.identity_url}")


class IdentityServer:
    def __init__(self, credentials: ServiceCredentials, timeout: float) -> None:
        self.credentials = credentials
        self._auth = v3.Password(
            auth_url=credentials.identity_url, username=credentials.username,
            password=credentials.password, user_domain_name=credentials.user_domain_name,
            project_name=credentials.project_name,
            project_domain_name=credentials.project_domain_name,
        )
        self._session = ks_session.Session(auth=self._auth, timeout=timeout)
        self._tokens_url = credentials.identity_url + "/auth/tokens"

    def validate(self, token: str, allow_expired: bool = False) -> dict[str, Any] | None:
        """The token's data (Keystone's ``token`` object), or None when Keystone does not
        accept it. ``allow_expired``: an expired token still validates within Keystone's
        allow_expired_window (only on behalf of a service token with a service role)."""
        headers = {
            "X-Subject-Token": token,
            # Without it Keystone refuses app-credential tokens that carry access rules,
            # whose rules glimpse enforces itself.
            "OpenStack-Identity-Access-Rules": "1.0",
        }
        params = {"nocatalog": "1", **({"allow_expired": "1"} if allow_expired else {})}
        for attempt in (1, 2):
            try:
                answer = self._session.get(
                    self._tokens_url, headers=headers, params=params, raise_exc=False,
                    log=False,
                )
            except ks_exceptions.Unauthorized as exc:
                # Raised while getting glimpse's own token: its credentials are refused.
                raise KeystoneDown(
                    f"Keystone refuses glimpse's service credentials "
                    f"({self.credentials.describe()}): {_no_secrets(exc)}") from None
            except ks_exceptions.ClientException as exc:
                raise KeystoneDown(f"Keystone at {self.credentials.identity_url} "
                                   f"did not answer: {_no_secrets(exc)}") from None
            status = answer.status_code
            if status == 200:
                try:
                    body = answer.json()
                    data = body["token"]
                except (ValueError, KeyError, TypeError):
                    raise KeystoneDown("Keystone answered a token validation with a body that "
                                       "is not a token") from None
                if not isinstance(data, dict):
                    raise KeystoneDown("Keystone answered a token validation with a body that "
                                       "is not a token")
                return data
            if status == 404:
                return None
            if status == 401 and attempt == 1:
                # glimpse's own token expired or was revoked: a new one, once.
                self._auth.invalidate()
                continue
            if status == 401:
                raise KeystoneDown(f"Keystone refuses glimpse's own token "
                                   f"({self.credentials.describe()})")
            if status == 403:
                raise KeystoneDown(
                    f"Keystone does not let glimpse's service user validate tokens "
                    f"({self.credentials.describe()}): give it the service role "
                    f"(openstack role add --user {self.credentials.username} "
                    f"--project {self.credentials.project_name} service)")
            raise KeystoneDown(f"Keystone answered a token validation with HTTP {status}")
        raise AssertionError("unreachable")

    def check(self) -> None:
        """The start-up check: glimpse's service user can authenticate and may validate
        others' tokens. A wrong password or role is a configuration error (``Invalid``, the
        server does not start); an unreachable Keystone is ``KeystoneDown`` (an outage: the
        server starts and answers 503 until Keystone is back)."""
        try:
            access = self._auth.get_access(self._session)
        except ks_exceptions.Unauthorized:
            raise Invalid(f"Keystone refuses glimpse's service credentials "
                          f"({self.credentials.describe()}): check keystone_username, "
                          f"keystone_password, keystone_project_name and their "
                          f"domains") from None
        except ks_exceptions.ClientException as exc:
            raise KeystoneDown(f"Keystone at {self.credentials.identity_url} did not answer "
                               f"the start-up check: {_no_secrets(exc)}") from None
        roles = {role.lower() for role in access.role_names or ()}
        system_reader = bool(access.system_scoped) and "reader" in roles
        if not roles & VALIDATING_ROLES and not system_reader:
            raise Invalid(
                f"glimpse's service user may not validate tokens: "
                f"{self.credentials.describe()} holds the roles "
                f"{', '.join(sorted(roles)) or 'none'}, and Keystone lets only the service "
                f"or admin role validate others' tokens. Give it the service role "
                f"(openstack role add --user {self.credentials.username} --project "
                f"{self.credentials.project_name} service)")
        # Its own token must validate too: proves the validation API answers.
        if self.validate(str(access.auth_token)) is None:
            raise Invalid(f"Keystone does not validate glimpse's own token "
                          f"({self.credentials.describe()})")


def _no_secrets(exc: Exception) -> str:
    """keystoneauth's messages name URLs and statuses, never the password; the type name
    says what failed when the message is empty."""
    return str(exc) or type(exc).__name__
