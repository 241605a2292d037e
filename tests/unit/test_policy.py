"""The policy rules (glimpse/domain/policy.py, policy_rules.py): the table, every default's
predicate against its check string over a matrix of callers and targets, scope, overrides and
the list hook.

The check strings are evaluated here by a small reading of oslo.policy's language written for
this test (role:, rule:, project_id:%(key)s, 'literal':%(key)s, and/or/not, brackets, the
empty rule), independent of the predicates; the differential test against oslo.policy itself
lives with the policy files.
"""

from __future__ import annotations

import ast
import itertools
import time
from collections.abc import Mapping

import pytest

from glimpse.domain import policy
from glimpse.domain.model import Image, Principal, Status, Visibility
from glimpse.domain.policy import (
    BY_NAME,
    RULES,
    SCOPE_MESSAGE,
    ImageTarget,
    Policy,
    Target,
    new_image_target,
)
from glimpse.domain.policy_rules import GLANCE_RULES
from glimpse.errors import Forbidden

# -- an evaluator of check strings, for the test -------------------------------------------------

def tokenize(check_str: str) -> list[str]:
    """Words split at spaces, leading '(' and trailing ')' peeled off (as oslo.policy's
    parser does: a check's own ``%(key)s`` keeps its brackets)."""
    tokens: list[str] = []
    for word in check_str.split():
        closing = 0
        while word.startswith("("):
            tokens.append("(")
            word = word[1:]
        while word.endswith(")") and not word.endswith(")s"):
            closing += 1
            word = word[:-1]
        if word:
            tokens.append(word)
        tokens.extend(")" * closing)
    return tokens


def evaluate(check_str: str, creds: Mapping[str, object], target: Target,
             rules: Mapping[str, str]) -> bool:
    tokens = tokenize(check_str)
    if not tokens:
        return True
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def expr() -> bool:
        value = conjunction()
        while peek() == "or":
            take()
            right = conjunction()
            value = value or right
        return value

    def conjunction() -> bool:
        value = negation()
        while peek() == "and":
            take()
            right = negation()
            value = value and right
        return value

    def negation() -> bool:
        if peek() == "not":
            take()
            return not negation()
        if peek() == "(":
            take()
            value = expr()
            assert take() == ")"
            return value
        return check(take())

    def check(token: str) -> bool:
        kind, _, match = token.partition(":")
        if kind == "role":
            return match.lower() in [str(r).lower() for r in creds["roles"]]  # type: ignore[attr-defined]
        if kind == "rule":
            return evaluate(rules[match], creds, target, rules)
        try:
            wanted = match % target
        except KeyError:
            return False
        try:
            return bool(wanted == str(ast.literal_eval(kind)))
        except ValueError:
            return kind in creds and wanted == str(creds[kind])

    result = expr()
    assert position == len(tokens), check_str
    return result


DEFAULTS = {rule.name: rule.check_str for rule in RULES}


def oracle(rule: str, caller: Principal, target: Target) -> bool:
    """What the check string says, with glimpse's project-only scope."""
    if caller.system_scope is not None or caller.domain_id is not None:
        return False
    creds = {"roles": caller.roles, "project_id": caller.owner, "user_id": caller.user}
    return evaluate(DEFAULTS[rule], creds, target, DEFAULTS)


# -- the matrix ----------------------------------------------------------------------------------

ROLE_SETS: list[tuple[str, ...]] = [
    (), ("reader",), ("member",), ("member", "reader"), ("admin",),
    ("admin", "manager", "member", "reader"), ("service",), ("manager", "member", "reader"),
    ("Member", "READER"),  # the identity layer lower-cases; a rule's role names are lower case
]
PROJECTS = [None, "p1", "p2"]
SCOPES = [{}, {"system_scope": "all"}, {"domain_id": "default"}]


def callers() -> list[Principal]:
    out = []
    for roles, project, scope in itertools.product(ROLE_SETS, PROJECTS, SCOPES):
        roles = tuple(r.lower() for r in roles)
        out.append(DEFAULT.admitted(Principal(
            tenant=project, user="u", roles=roles, is_admin=False, owner=project,
            **scope)))  # type: ignore[arg-type]
    return out


def targets() -> list[Target]:
    out: list[Target] = [{}, {"project_id": "p1"}, {"project_id": None}]
    for owner, visibility, caller in itertools.product(
            [None, "p1", "p2"], list(Visibility), [None, "p1", "p2"]):
        image = Image(id="i", status=Status.ACTIVE, owner=owner, visibility=visibility,
                      properties={"os_distro": "x"})
        out.append(ImageTarget(image, caller))
    for owner, visibility in itertools.product([None, "p1", "p2"], list(Visibility)):
        out.append(new_image_target(owner, visibility))
    # Mixed: v1's sharer target and an owner that differs from the project.
    out.append({"project_id": "p1", "owner": "p2", "visibility": "private"})
    return out


DEFAULT = Policy()
CALLERS = callers()
TARGETS = targets()


@pytest.mark.parametrize("rule", [rule.name for rule in RULES])
def test_every_default_predicate_is_its_check_string(rule: str) -> None:
    for caller, target in itertools.product(CALLERS, TARGETS):
        # ImageTarget's member_id is about the caller it was made for; only meaningful pairs.
        assert DEFAULT.allowed(rule, caller, target) is oracle(rule, caller, target), (
            rule, caller.roles, caller.owner, caller.system_scope, caller.domain_id,
            dict(target.items()) if not isinstance(target, ImageTarget) else
            (target["project_id"], target["member_id"], target["visibility"]))


def test_the_table() -> None:
    assert len(GLANCE_RULES) == 67
    assert len(RULES) == 68 and RULES[-1].name == "copy_from"
    assert len(BY_NAME) == len(RULES)  # names are unique
    assert all(r.scope_types in (("project",), ()) for r in RULES)
    assert BY_NAME["get_image"].check_str == (
        "rule:context_is_admin or (role:reader and (project_id:%(project_id)s or "
        "project_id:%(member_id)s or 'community':%(visibility)s or 'public':%(visibility)s "
        "or 'shared':%(visibility)s))")
    assert BY_NAME["get_members"].check_str == (
        "rule:context_is_admin or role:reader and (project_id:%(project_id)s or "
        "project_id:%(member_id)s)")
    assert BY_NAME["add_image"].check_str == (
        "rule:context_is_admin or (role:member and project_id:%(project_id)s and "
        "project_id:%(owner)s)")
    assert BY_NAME["copy_from"].check_str == BY_NAME["upload_image"].check_str
    assert BY_NAME["service_api"].check_str == "role:service or role:admin"
    # Every served rule guards at least one request.
    assert all(r.operations for r in RULES if r.served and r.scope_types)


# -- who may do what, in words ---------------------------------------------------------------------

def caller(project: str | None, *roles: str, **extra: object) -> Principal:
    return DEFAULT.admitted(Principal(tenant=project, user="u", roles=roles, is_admin=False,
                                      owner=project, **extra))  # type: ignore[arg-type]


READER = caller("p1", "reader")
MEMBER = caller("p1", "member", "reader")
OTHER = caller("p2", "member", "reader")
ADMIN_ELSEWHERE = caller("p9", "admin", "member", "reader")


def image(owner: str | None = "p1", visibility: Visibility = Visibility.PRIVATE) -> Image:
    return Image(id="i", status=Status.ACTIVE, owner=owner, visibility=visibility)


def on(img: Image, who: Principal) -> ImageTarget:
    return ImageTarget(img, who.owner)


@pytest.mark.parametrize("rule", ["get_image", "get_images", "get_members", "get_member",
                                  "get_image_location"])
def test_a_reader_reads(rule: str) -> None:
    assert DEFAULT.allowed(rule, READER, on(image(), READER))


@pytest.mark.parametrize("rule", ["add_image", "modify_image", "delete_image", "upload_image",
                                  "download_image", "add_member", "delete_member", "deactivate",
                                  "reactivate", "communitize_image", "set_image_location",
                                  "copy_from", "publicize_image", "delete_image_location"])
def test_a_reader_neither_writes_nor_downloads(rule: str) -> None:
    target = new_image_target("p1", "private") if rule == "add_image" else on(image(), READER)
    assert not DEFAULT.allowed(rule, READER, target)


def test_a_member_writes_its_projects_images_and_not_others() -> None:
    mine, theirs = image("p1"), image("p2", Visibility.PUBLIC)
    for rule in ("modify_image", "delete_image", "upload_image", "deactivate", "add_member"):
        assert DEFAULT.allowed(rule, MEMBER, on(mine, MEMBER))
        assert not DEFAULT.allowed(rule, MEMBER, on(theirs, MEMBER))
    assert DEFAULT.allowed("download_image", MEMBER, on(theirs, MEMBER))
    assert not DEFAULT.allowed("publicize_image", MEMBER, on(mine, MEMBER))
    assert DEFAULT.allowed("add_image", MEMBER, new_image_target("p1", "shared"))
    assert not DEFAULT.allowed("add_image", MEMBER, new_image_target("p2", "shared"))


def test_members_of_a_shared_image() -> None:
    shared = image("p1", Visibility.SHARED)
    # The target names the caller as the member only on a shared image it does not own.
    assert on(shared, OTHER)["member_id"] == "p2"
    assert on(shared, MEMBER)["member_id"] is None
    assert on(image("p1", Visibility.PRIVATE), OTHER)["member_id"] is None
    assert DEFAULT.allowed("modify_member", OTHER, on(shared, OTHER))
    assert not DEFAULT.allowed("modify_member", MEMBER, on(shared, MEMBER))  # the owner
    assert DEFAULT.allowed("get_members", OTHER, on(shared, OTHER))
    assert not DEFAULT.allowed("add_member", OTHER, on(shared, OTHER))
    assert not DEFAULT.allowed("get_members", OTHER, on(image("p1", Visibility.PUBLIC), OTHER))


def test_any_projects_admin_is_admin() -> None:
    assert ADMIN_ELSEWHERE.is_admin
    for rule in ("modify_image", "publicize_image", "delete_image_location", "add_member",
                 "download_image", "get_image"):
        assert DEFAULT.allowed(rule, ADMIN_ELSEWHERE, on(image("p1"), ADMIN_ELSEWHERE))


def test_service_api_counts_a_service_tokens_roles() -> None:
    """glimpse's one extension of a check string: nova's X-Service-Token's service role."""
    nova_for_user = caller("p1", "member", "reader", service_roles=("service",))
    assert DEFAULT.allowed("service_api", nova_for_user)
    assert DEFAULT.allowed("fetch_image_location", nova_for_user, on(image("p2"), nova_for_user))
    assert not DEFAULT.allowed("fetch_image_location", MEMBER, on(image("p1"), MEMBER))
    assert DEFAULT.allowed("fetch_image_location", caller("svc", "service"))


def test_system_and_domain_scopes_pass_no_rule() -> None:
    for extra in ({"system_scope": "all"}, {"domain_id": "default"}):
        admin = caller(None, "admin", "member", "reader", **extra)
        assert not admin.is_admin
        assert not any(DEFAULT.allowed(r.name, admin, {}) for r in RULES)
        with pytest.raises(Forbidden, match=SCOPE_MESSAGE):
            DEFAULT.enforce("get_images", admin, {"project_id": None})
        with pytest.raises(Forbidden, match=SCOPE_MESSAGE):
            DEFAULT.require_scope(admin)


def test_enforce_words_refusals() -> None:
    with pytest.raises(Forbidden, match=r"^You are not authorized to complete publicize_image "
                                        r"action\.$"):
        DEFAULT.enforce("publicize_image", MEMBER, on(image(), MEMBER))
    with pytest.raises(Forbidden, match=r"^nope$") as caught:
        DEFAULT.enforce("publicize_image", MEMBER, on(image(), MEMBER), "nope", code="publicize")
    assert caught.value.code == "publicize"
    DEFAULT.enforce("modify_image", MEMBER, on(image(), MEMBER))


def test_an_unknown_rule_is_refused_unless_the_operator_defines_it() -> None:
    assert not DEFAULT.allowed("no_such_rule", ADMIN_ELSEWHERE)
    assert Policy(Overrides({"no_such_rule": True})).allowed("no_such_rule", READER)


def test_image_target_reads_like_glances() -> None:
    img = Image(id="abc", status=Status.ACTIVE, owner="p1", visibility=Visibility.SHARED,
                name="n", properties={"os_distro": "cirros", "owner": "spoof"})
    target = ImageTarget(img, "p2")
    assert (target["project_id"], target["owner"], target["id"], target["image_id"]) == (
        "p1", "p1", "abc", "abc")
    assert (target["visibility"], target["member_id"], target["name"]) == ("shared", "p2", "n")
    assert target["os_distro"] == "cirros"
    assert target.get("missing") is None
    with pytest.raises(KeyError):
        target["missing"]
    assert "os_distro" in set(target) and list(target).count("owner") == 1


# -- overrides -------------------------------------------------------------------------------------

class Overrides:
    """RuleOverrides for tests: fixed answers per rule name; counts what it is asked."""

    def __init__(self, answers: Mapping[str, bool | None]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    def check(self, rule: str, principal: Principal, target: Target) -> bool | None:
        self.asked.append(rule)
        answer = self.answers.get(rule)
        return answer if not callable(answer) else answer(principal, target)


def test_an_override_decides_its_rule_only() -> None:
    custom = Policy(Overrides({"publicize_image": True, "download_image": False}))
    assert custom.allowed("publicize_image", MEMBER, on(image(), MEMBER))
    assert not custom.allowed("download_image", MEMBER, on(image(), MEMBER))
    assert custom.allowed("modify_image", MEMBER, on(image(), MEMBER))  # the default


def test_context_is_admin_overridden() -> None:
    """Operators' custom admin role: context_is_admin: role:cloud_admin."""
    custom = Policy(Overrides({"context_is_admin": None}))
    custom.overrides.answers["context_is_admin"] = (  # type: ignore[union-attr]
        lambda p, t: "cloud_admin" in p.roles)
    plain_admin = custom.admitted(Principal("p9", "u", ("admin", "member", "reader"), True,
                                            "p9"))
    cloud_admin = custom.admitted(Principal("p9", "u", ("cloud_admin",), False, "p9"))
    assert not plain_admin.is_admin and cloud_admin.is_admin
    assert not custom.allowed("modify_image", plain_admin, on(image("p1"), plain_admin))
    assert custom.allowed("modify_image", cloud_admin, on(image("p1"), cloud_admin))
    # service_api names role:admin itself, not the admin rule.
    assert custom.allowed("service_api", plain_admin)


def test_a_referenced_rule_overridden_reaches_the_rules_naming_it() -> None:
    custom = Policy(Overrides({"service_api": False}))
    nova = caller("svc", "service")
    assert not custom.allowed("fetch_image_location", nova, on(image(), nova))


def test_lists_check_rows_only_while_get_image_is_overridden() -> None:
    rows = [image("p1"), image("p2", Visibility.PUBLIC), image("p3", Visibility.COMMUNITY)]
    assert DEFAULT.visible(READER, rows) == rows
    plain = Overrides({})
    assert Policy(plain).visible(READER, rows) == rows
    assert plain.asked == ["get_image"]  # the first row told: not overridden
    strict = Overrides({"get_image": None})
    strict.answers["get_image"] = lambda p, t: t["project_id"] == p.owner  # type: ignore[assignment]
    assert Policy(strict).visible(READER, rows) == rows[:1]
    assert strict.asked == ["get_image"] * 3


def test_may_see_keeps_the_404_gate() -> None:
    never_member = lambda: False  # noqa: E731
    assert DEFAULT.may_see(READER, image("p1"), never_member)
    assert not DEFAULT.may_see(OTHER, image("p1"), never_member)  # invisible
    assert DEFAULT.may_see(OTHER, image("p1", Visibility.PUBLIC), never_member)
    no_roles = caller("p1")
    assert not DEFAULT.may_see(no_roles, image("p1"), never_member)  # get_image refuses
    # Ownerless images (noauth) are everyone's to read, by default.
    assert DEFAULT.may_see(OTHER, image(None), never_member)
    hidden = Policy(Overrides({"get_image": False}))
    assert not hidden.may_see(ADMIN_ELSEWHERE, image(None), never_member)


def test_a_default_costs_about_a_microsecond() -> None:
    """The defaults run per request, and a list's rows cost nothing: keep them cheap (a loose
    bound: the machine is shared)."""
    target = on(image("p1", Visibility.SHARED), OTHER)
    rounds = 20000
    started = time.perf_counter()
    for _ in range(rounds):
        DEFAULT.allowed("get_image", OTHER, target)
    assert (time.perf_counter() - started) / rounds < 20e-6


def test_policy_module_is_the_only_rule_keeper() -> None:
    """The domain asks rules by name: no hard-coded role checks outside the policy."""
    import inspect

    from glimpse.domain import images, locations, members
    for module in (images, members, locations):
        source = inspect.getsource(module)
        assert '"admin" in' not in source and "roles" not in source, module.__name__
    assert policy.DEFAULT_POLICY.overrides is None


def test_docs_list_every_rule() -> None:
    """docs/identity.md's Policy section names every rule of the table."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "identity.md").read_text()
    section = text[text.index("## Policy"):]
    missing = [r.name for r in RULES if f"`{r.name}`" not in section]
    assert missing == []
