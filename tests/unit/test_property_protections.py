"""Property protections: the file parser (Glance's format, hostile files) and the matcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from glimpse.domain import protections
from glimpse.domain.model import Image, Principal, Status
from glimpse.domain.protections import (
    Operation,
    PropertyRules,
    ProtectionFileError,
    RuleFormat,
    parse,
)
from glimpse.errors import Invalid, PropertyProtected

C, R, U, D = Operation.CREATE, Operation.READ, Operation.UPDATE, Operation.DELETE

# Glance's own sample (etc/property-protections-roles.conf.sample), comments and all.
GLANCE_SAMPLE = """\
# property-protections-roles.conf.sample
#
# Specify regular expression for which properties will be protected in []

[^x_.*]
create = admin,member,_member_
read = admin,member,_member_
update = admin,member,_member_
delete = admin,member,_member_

[.*]
create = admin
read = admin
update = admin
delete = admin
"""

RULES = """\
[^x_owner_.*]
create = admin,member
read = admin,member
update = admin,member
delete = admin,member

[spl_read_only_prop]
create = admin
read = admin,spl_role
update = admin
delete = admin

[spl_update_prop]
create = admin,spl_role
read = admin,spl_role
update = admin,spl_role
delete = admin

[^x_all_permitted.*]
create = @
read = @
update = @
delete = @

[^x_none_permitted.*]
create = !
read = !
update = !
delete = !

[x_none_read]
create = admin,member
read = !
update = !
delete = !

[x_case_insensitive]
create = admin,Member
read = admin,Member
update = admin,Member
delete = admin,Member

[x_foo_matcher]
create = admin
read = admin
update = admin
delete = admin

[x_foo_*]
create = @
read = @
update = @
delete = @

[^only_admin_update$]
create = member
read = member
update = admin
delete = member,!

[.*]
create = admin
read = admin
update = admin
delete = admin
"""


def who(*roles: str, service: tuple[str, ...] = (), admin: bool = False) -> Principal:
    return Principal(tenant="p", user="u", roles=tuple(r.lower() for r in roles),
                     is_admin=admin or "admin" in roles, owner="p", service_roles=service)


def rules(text: str = RULES, rule_format: RuleFormat = RuleFormat.ROLES,
          policy: protections.PolicyCheck | None = None) -> PropertyRules:
    return PropertyRules(parse(text, rule_format), rule_format, policy)


def may(text: str, principal: Principal, name: str, op: Operation) -> bool:
    return rules(text).for_caller(principal).may(name, op)


# -- matching ---------------------------------------------------------------------------------


def test_glance_sample_parses_and_means_what_it_says() -> None:
    member, admin, other = who("member"), who("admin"), who("reader")
    assert may(GLANCE_SAMPLE, member, "x_distro", U)
    assert may(GLANCE_SAMPLE, who("_member_"), "x_distro", D)
    assert not may(GLANCE_SAMPLE, other, "x_distro", R)
    # Anything else: admins only.
    assert not may(GLANCE_SAMPLE, member, "os_distro", C)
    assert may(GLANCE_SAMPLE, admin, "os_distro", C)


def test_first_matching_section_in_file_order_decides() -> None:
    catch_all_first = "[.*]\ncreate = admin\nread = admin\nupdate = admin\ndelete = admin\n" \
        "[^x_.*]\ncreate = @\nread = @\nupdate = @\ndelete = @\n"
    # The later, more specific section is never reached.
    assert not may(catch_all_first, who("member"), "x_anything", C)
    # x_foo_matcher comes before x_foo_*: admins only, though x_foo_* would allow everyone.
    assert not may(RULES, who("member"), "x_foo_matcher", R)
    assert may(RULES, who("member"), "x_foo_bar", R)


def test_patterns_are_searched_not_anchored() -> None:
    # [x_foo_*] has no anchor: it is found inside a longer name (Glance's re.search).
    assert may(RULES, who("reader"), "my_x_foo_thing", C)
    # [^x_owner_.*] is anchored: elsewhere in a name it does not count (the [.*] rule does).
    assert not may(RULES, who("member"), "not_x_owner_foo", C)
    assert may(RULES, who("member"), "x_owner_foo", C)


def test_a_name_no_section_matches_is_no_ones() -> None:
    text = "[^x_]\ncreate = @\nread = @\nupdate = @\ndelete = @\n"
    access = rules(text).for_caller(who("admin"))
    assert access.may("x_a", R)
    for op in Operation:
        assert not access.may("y_a", op)


def test_everyone_no_one_and_empty() -> None:
    anyone = who("whatever")
    for op in Operation:
        assert may(RULES, anyone, "x_all_permitted_1", op)
        assert not may(RULES, who("admin"), "x_none_permitted_1", op)
    empty = "[.*]\ncreate =\nread = @\nupdate = \ndelete = ,\n"
    assert not may(empty, who("admin"), "a", C)
    assert not may(empty, who("admin"), "a", U)
    assert not may(empty, who("admin"), "a", D)
    assert may(empty, who("admin"), "a", R)
    # '!' among roles: no one, the roles named with it included (as in Glance).
    assert not may(RULES, who("member"), "only_admin_update", D)


def test_roles_compare_without_case_and_service_roles_count() -> None:
    assert may(RULES, who("member"), "x_case_insensitive", C)
    assert may(RULES, who("MEMBER"), "x_case_insensitive", R)
    assert may(RULES, who("reader", service=("spl_role",)), "spl_update_prop", U)
    assert not may(RULES, who("reader"), "spl_update_prop", U)


def test_admins_are_not_exempt() -> None:
    # An administrator without a role the file names (noauth's anonymous admin) gets nothing.
    anonymous_admin = Principal(tenant=None, user=None, roles=(), is_admin=True, owner=None)
    assert not may(RULES, anonymous_admin, "x_owner_a", C)
    assert not may(RULES, anonymous_admin, "anything", R)
    assert not may(RULES, who("admin"), "x_none_read", R)


def test_property_names_match_case_sensitively() -> None:
    assert may(RULES, who("member"), "x_owner_a", C)
    assert not may(RULES, who("member"), "X_OWNER_A", C)


# -- the policies format ----------------------------------------------------------------------


POLICIES = """\
[spl_creator_policy]
create = glance_creator
read = glance_creator
update = context_is_admin
delete = context_is_admin

[^public_]
create = !
read = @
update = !
delete = !

[.*]
create = context_is_admin
read = context_is_admin
update = context_is_admin
delete = context_is_admin
"""


def test_policies_name_one_rule_each_evaluated_for_the_caller() -> None:
    asked: list[tuple[str, Principal]] = []

    def check(rule: str, principal: Principal) -> bool:
        asked.append((rule, principal))
        return rule == "glance_creator" and "spl_role" in principal.roles

    caller = who("spl_role")
    access = rules(POLICIES, RuleFormat.POLICIES, check).for_caller(caller)
    assert access.may("spl_creator_policy", C)
    assert not access.may("spl_creator_policy", U)
    assert access.may("public_x", R)
    assert not access.may("public_x", C)
    assert not access.may("other", R)
    # '@' and '!' need no rule; each (section, operation) is asked once per caller.
    assert access.may("spl_creator_policy", R)
    assert access.may("spl_creator_policy", C)
    assert sorted({rule for rule, _ in asked}) == ["context_is_admin", "glance_creator"]
    assert len(asked) == 4  # spl create, update, read; other read
    assert all(p is caller for _, p in asked)


def test_policies_format_refuses_several_rules() -> None:
    with pytest.raises(ProtectionFileError, match="one policy rule per operation"):
        parse("[a]\ncreate = r1,r2\nread = @\nupdate = @\ndelete = @\n", RuleFormat.POLICIES)


def test_policies_format_needs_a_check() -> None:
    with pytest.raises(ValueError):
        PropertyRules(parse(POLICIES, RuleFormat.POLICIES), RuleFormat.POLICIES)


# -- hostile files ----------------------------------------------------------------------------

FULL = "create = @\nread = @\nupdate = @\ndelete = @\n"


@pytest.mark.parametrize(("text", "message"), [
    ("", "no sections"),
    ("# only a comment\n\n; and another\n", "no sections"),
    ("[a(]\n" + FULL, r"section \[a\(\] is not a valid regular expression"),
    ("[*x]\n" + FULL, "not a valid regular expression"),
    ("[a]\ncreate = @\nread = @\nupdate = @\n", r"section \[a\] does not give delete"),
    ("[a]\ncreate = @\n", "does not give read, update, delete"),
    ("[a]\n", "does not give create, read, update, delete"),
    ("[a]\n" + FULL + "raed = @\n", "unknown operation raed"),
    ("[a]\n" + FULL + "[b]\ncreate = @\nread = @\nupdate = @\ndelte = @\n",
     "unknown operation delte"),
    ("[a]\ncreate = admin, @, !\nread = @\nupdate = @\ndelete = @\n", "mutually exclusive"),
    ("[a]\n" + FULL + "[a]\n" + FULL, "not a valid INI file"),
    ("[a]\n" + FULL + "create = admin\n", "not a valid INI file"),
    ("create = admin\n[a]\n" + FULL, "not a valid INI file"),
    ("[a]\ncreate\nread = @\nupdate = @\ndelete = @\n", "not a valid INI file"),
    ("[DEFAULT]\nread = @\n[a]\n" + FULL, r"\[DEFAULT\] section is not allowed"),
])
def test_bad_files_are_refused_with_the_reason(text: str, message: str) -> None:
    with pytest.raises(ProtectionFileError, match=message):
        parse(text, RuleFormat.ROLES)


def test_refusals_are_configuration_errors() -> None:
    assert issubclass(ProtectionFileError, Invalid)


def test_keys_are_case_insensitive_and_both_separators_work() -> None:
    text = "[a]\nCreate: admin\nREAD = admin\nupdate=admin\ndelete : admin\n"
    assert may(text, who("admin"), "a", C)
    assert may(text, who("admin"), "a", R)


def test_percent_and_brackets_in_patterns_and_values() -> None:
    text = "[^[a-c]+%$]\ncreate = ro%le\nread = @\nupdate = @\ndelete = @\n"
    assert may(text, who("ro%le"), "ab%", C)
    assert not may(text, who("ro%le"), "abd%", C)


def test_load_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.conf"
    with pytest.raises(ProtectionFileError, match=f"{missing}: cannot be read"):
        protections.load(missing, RuleFormat.ROLES)
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"[a]\ncreate = \xff\n")
    with pytest.raises(ProtectionFileError, match="not UTF-8"):
        protections.load(binary, RuleFormat.ROLES)
    bad = tmp_path / "bad.conf"
    bad.write_text("[(]\n" + FULL)
    with pytest.raises(ProtectionFileError, match=f"{bad}: section"):
        protections.load(bad, RuleFormat.ROLES)
    good = tmp_path / "good.conf"
    good.write_text(GLANCE_SAMPLE)
    assert len(protections.load(good, RuleFormat.ROLES)) == 2


# -- one caller's access ----------------------------------------------------------------------


def image(**properties: str | None) -> Image:
    return Image(id="i", status=Status.ACTIVE, properties=dict(properties))


def test_shown_hides_unreadable_properties_without_touching_the_image() -> None:
    original = image(x_owner_a="1", spl_read_only_prop="2", other="3")
    member = rules().for_caller(who("member"))
    shown = member.shown(original)
    assert shown.properties == {"x_owner_a": "1"}
    assert original.properties == {"x_owner_a": "1", "spl_read_only_prop": "2", "other": "3"}
    # Nothing hidden: the very same object (lists render thousands of them).
    admin = rules().for_caller(who("admin"))
    visible = image(x_owner_a="1", other="3")
    assert admin.shown(visible) is visible


def test_check_set_create_update_and_unchanged_values() -> None:
    spl = rules().for_caller(who("spl_role"))
    current: dict[str, str | None] = {"spl_read_only_prop": "v", "spl_update_prop": "u"}
    spl.check_set({"spl_update_prop": "new"}, current, frozenset())
    # Resending an unchanged value needs read, not update (Glance v1).
    spl.check_set({"spl_read_only_prop": "v"}, current, frozenset())
    with pytest.raises(PropertyProtected) as refused:
        spl.check_set({"spl_read_only_prop": "changed"}, current, frozenset())
    assert refused.value.name == "spl_read_only_prop"
    with pytest.raises(PropertyProtected):
        spl.check_set({"brand_new": "x"}, current, frozenset())
    # An existing property the caller may not read may not be set, even to its own value.
    with pytest.raises(PropertyProtected):
        spl.check_set({"secret": "s"}, {"secret": "s"}, frozenset({"secret"}))


def test_match_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protections, "_MATCH_CACHE_SIZE", 10)
    found = rules()
    for i in range(100):
        found.section_of(f"name_{i}")
    assert len(found._matches) <= 10
    assert found.section_of("x_owner_a") == 0


# -- wired to the policy rules (glimpse.app) --------------------------------------------------


class OperatorRules:
    """A policy file that defines glance_creator, as Glance's functional tests do."""

    def check(self, rule: str, principal: Principal, target: object) -> bool | None:
        if rule == "glance_creator":
            return "admin" in principal.roles or "spl_role" in principal.roles
        return None


def test_the_policies_format_evaluates_glimpse_policy_rules(tmp_path: Path) -> None:
    from glimpse.app import build_protections
    from glimpse.domain.policy import Policy
    from glimpse.settings import Settings

    path = tmp_path / "p.conf"
    path.write_text(POLICIES)
    settings = Settings(property_protection_file=path,
                        property_protection_rule_format="policies")
    built = build_protections(settings, Policy(OperatorRules()))
    assert built is not None
    spl, admin, member = (built.for_caller(who("spl_role")), built.for_caller(who("admin")),
                          built.for_caller(who("member")))
    assert spl.may("spl_creator_policy", C) and not member.may("spl_creator_policy", C)
    # context_is_admin: Glance's default, role:admin.
    assert admin.may("other", U) and not spl.may("other", U)
    # Without the operator's rule, glance_creator is no one's (an undefined rule).
    plain = build_protections(settings, Policy())
    assert plain is not None
    assert not plain.for_caller(who("admin")).may("spl_creator_policy", C)
    # A system-scoped caller passes no policy rule.
    system = Principal(tenant=None, user="u", roles=("admin",), is_admin=True, owner=None,
                       system_scope="all")
    assert not built.for_caller(system).may("other", R)
    assert build_protections(Settings(), Policy()) is None


def test_empty_operations_are_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    sections = parse("[^a]\ncreate =\nread = @\nupdate = !\ndelete = \n", RuleFormat.ROLES)
    assert sections[0].empty == (C, D)
    with caplog.at_level("WARNING"):
        protections.warn(sections)
    assert [r.getMessage() for r in caplog.records] == [
        "property protections: [^a] create is empty, which allows no one",
        "property protections: [^a] delete is empty, which allows no one"]
