"""The differential test: every default rule's hand-written predicate (``Policy.allowed`` with no
overrides) against oslo.policy's own evaluation of the same check string (``Enforcer.enforce``
with glimpse's rules registered, scope types included), over a generated matrix of callers
(role sets, projects, service tokens, scopes) and targets (owners, members, visibilities).

The callers reach oslo.policy as glimpse hands them to an operator's rules
(``glimpse.policy_files.credentials``), with one documented widening: glimpse's
``service_api`` also counts an X-Service-Token's roles, so oslo.policy is shown those roles
among the caller's.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from oslo_config import cfg
from oslo_context import context
from oslo_policy import policy as oslo

from glimpse import policy_namespace
from glimpse.domain.model import Principal
from glimpse.domain.policy import RULES, Policy, Rule, in_scope
from glimpse.policy_language import credentials

ROLE_SETS = [(), ("reader",), ("member",), ("member", "reader"), ("admin",),
             ("admin", "member", "reader"), ("service",), ("member", "reader", "service"),
             ("image_publicizer",)]
PROJECTS = ["p1", None]
SERVICE_ROLES = [(), ("service",)]
SCOPES: list[dict[str, Any]] = [{}, {"system_scope": "all"}, {"domain_id": "d1"}]
VISIBILITIES = ["public", "community", "shared", "private"]
# (project_id, owner): an image's owner is both; a create's target may differ (add_image).
OWNERS = [("p1", "p1"), ("p2", "p2"), ("p1", "p2"), ("p2", "p1")]
MEMBERS: list[Any] = ["p1", "p2", None, KeyError]  # KeyError: the target has no member_id


def callers() -> Iterator[Principal]:
    for roles, project, service, scope in itertools.product(
            ROLE_SETS, PROJECTS, SERVICE_ROLES, SCOPES):
        yield Principal(tenant=project, user="u1", roles=roles, is_admin=False, owner=project,
                        service_roles=service, **scope)


def targets() -> Iterator[dict[str, object]]:
    for (project, owner), member, visibility in itertools.product(
            OWNERS, MEMBERS, VISIBILITIES):
        target: dict[str, object] = {"project_id": project, "owner": owner,
                                     "visibility": visibility, "id": "i1"}
        if member is not KeyError:
            target["member_id"] = member
        yield target


@functools.cache
def enforcer() -> oslo.Enforcer:
    conf = cfg.ConfigOpts()
    conf([], project="glimpse-differential")
    found = oslo.Enforcer(conf)  # no policy file is found: the defaults alone
    found.register_defaults(policy_namespace.list_rules())
    found.load_rules()
    return found


def oslo_allows(rule: str, principal: Principal, target: dict[str, object]) -> bool:
    creds = credentials(principal)
    # glimpse's one widening: service_api counts the service token's roles.
    creds["roles"] = [*creds["roles"], *principal.service_roles]
    return bool(enforcer().enforce(rule, target, creds))


CALLERS = list(callers())
TARGETS = list(targets())


@functools.cache
def oslo_answers(check_str: str, scope_types: tuple[str, ...]) -> list[bool]:
    """oslo.policy's answers over the matrix for a rule with this check string and scope
    (rules sharing both get the same answers: asked once, through the first such rule,
    since an Enforcer call costs about 40 us)."""
    rule = next(r.name for r in RULES
                if (r.check_str, r.scope_types) == (check_str, scope_types))
    return [oslo_allows(rule, caller, target) for caller in CALLERS for target in TARGETS]


def test_the_matrix_is_big() -> None:
    assert len(CALLERS) * len(TARGETS) > 3000
    assert len(RULES) == 68


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_predicate_matches_oslo_policy(rule: Rule) -> None:
    defaults = Policy()
    theirs = iter(oslo_answers(rule.check_str, rule.scope_types))
    mismatches = []
    for caller in CALLERS:
        principal = defaults.admitted(caller)
        for target in TARGETS:
            ours = defaults.allowed(rule.name, principal, target)
            expected = next(theirs)
            if not in_scope(principal) and not rule.scope_types:
                # Glance's helper rules name no scope, so oslo.policy evaluates them for any
                # token; glimpse refuses a system- or domain-scoped caller before any rule
                # (every rule using them is project-scoped, so the APIs agree).
                assert ours is False
            elif ours != expected:
                mismatches.append((caller.roles, caller.owner, caller.service_roles,
                                   caller.system_scope, caller.domain_id, target, ours))
    assert not mismatches, f"{len(mismatches)} disagreements, e.g. {mismatches[:3]}"


def test_credentials_are_oslo_contexts_policy_values() -> None:
    """The creds glimpse gives an operator's rules: oslo.context's (and ``system``, which
    Enforcer.enforce adds)."""
    principal = Principal(
        tenant="p1", user="u1", roles=("member", "reader"), is_admin=False, owner="p1",
        user_domain_id="default", project_domain_id="default", system_scope="all",
        domain_id="d1", service_roles=("service",), service_user="nova",
        service_project="svc", is_admin_project=False)
    ctx = context.RequestContext(
        user_id="u1", project_id="p1", roles=["member", "reader"], user_domain_id="default",
        project_domain_id="default", system_scope="all", domain_id="d1",
        service_roles=["service"], service_user_id="nova", service_project_id="svc",
        is_admin_project=False)
    expected = dict(ctx.to_policy_values())
    expected["system"] = "all"
    assert credentials(principal) == expected
