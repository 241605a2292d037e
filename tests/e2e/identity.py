"""Trusted identity headers (spec §2.1) for e2e tests."""

from __future__ import annotations


def ctx(
    tenant: str | None = None, roles: str = "member", user: str | None = None
) -> dict[str, str]:
    """Headers for a caller: a tenant (or none), its roles, optionally a user id."""
    headers = {"X-Roles": roles}
    if tenant is not None:
        headers["X-Tenant-Id"] = tenant
    if user is not None:
        headers["X-User-Id"] = user
    return headers


def tenant(name: str, roles: str = "member") -> dict[str, str]:
    """Headers for a user of project ``name`` (its user id derived from it)."""
    return ctx(name, roles, user=f"user-{name}")
