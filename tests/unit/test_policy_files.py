"""Operators' policy files (glimpse.policy_files): parsing, merging, which rules they decide,
reloading, and their evaluation against oslo.policy's own over a matrix of callers and
targets."""

from __future__ import annotations

import functools
import itertools
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from oslo_config import cfg
from oslo_policy import policy as oslo

from glimpse import policy_namespace
from glimpse import settings as settings_mod
from glimpse.domain.model import Image, Principal, Status, Visibility
from glimpse.domain.policy import RULES, ImageTarget, Policy, Rule
from glimpse.errors import Invalid
from glimpse.policy_files import PolicyFiles, PolicySources
from glimpse.policy_language import PolicyFileError, compile_rules, credentials

CASE_11 = """\
publicize_image: "role:image_publicizer"
get_image: "rule:context_is_admin"
context_is_admin: "role:cloud_admin"
"""


def caller(*roles: str, project: str | None = "p1", **extra: Any) -> Principal:
    return Principal(tenant=project, user="u1", roles=roles, is_admin=False, owner=project,
                     **extra)


def image(owner: str = "p2", visibility: Visibility = Visibility.PRIVATE) -> Image:
    return Image(id="i1", status=Status.ACTIVE, owner=owner, visibility=visibility)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    # Editors save within a second; the signature sees size and inode besides the mtime, and
    # an explicit step keeps a same-size edit visible on coarse-mtime filesystems.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    return path


# --- what the files decide ------------------------------------------------------------------

def test_case_11_rules_take_effect(tmp_path: Path) -> None:
    files = PolicyFiles.load(write(tmp_path / "policy.yaml", CASE_11))
    policy = Policy(files)
    cloud_admin = policy.admitted(caller("cloud_admin"))
    admin = policy.admitted(caller("admin", "member", "reader"))
    publicizer = policy.admitted(caller("image_publicizer", "member", "reader"))
    assert cloud_admin.is_admin and not admin.is_admin
    target = ImageTarget(image(), "p1")
    assert policy.allowed("get_image", cloud_admin, target)
    # An owner who is no admin no longer sees its own image.
    assert not policy.allowed("get_image", publicizer, ImageTarget(image(owner="p1"), "p1"))
    assert policy.allowed("publicize_image", publicizer, {})
    assert not policy.allowed("publicize_image", admin, {})
    # Defaults naming context_is_admin follow it (through is_admin), without the file.
    assert policy.allowed("delete_image", cloud_admin, target)
    assert not policy.allowed("delete_image", admin, target)


def test_only_changed_and_added_rules_are_answered(tmp_path: Path) -> None:
    rules = compile_rules({
        "get_image": "rule:context_is_admin",
        # The default, written differently: still the default.
        "get_images": "rule:context_is_admin or   (role:reader and project_id:%(project_id)s)",
        "my_admins": "role:boss",
        "delete_image": "rule:my_admins",
        "typo_rulle": "role:x",
    })
    assert sorted(rules.answers) == ["delete_image", "get_image", "my_admins", "typo_rulle"]
    assert rules.redundant == ("get_images",)
    # my_admins is referenced, so it is no typo; typo_rulle is.
    assert rules.unknown == ("typo_rulle",)


def test_answers_none_for_a_rule_the_files_leave_alone(tmp_path: Path) -> None:
    files = PolicyFiles.load(write(tmp_path / "policy.yaml", CASE_11))
    assert files.check("modify_image", caller("member"), {}) is None
    assert files.check("an_unknown_rule", caller("member"), {}) is None


def test_rule_references_resolve_between_files_and_defaults(tmp_path: Path) -> None:
    files = PolicyFiles.load(write(tmp_path / "policy.yaml", """\
delete_image: "rule:service_api or rule:mine"
mine: "role:member and project_id:%(project_id)s"
download_image: "rule:no_such_rule"
default: "role:reader"
"""))
    target = {"project_id": "p1"}
    # service_api is the default's (role:service or role:admin).
    assert files.check("delete_image", caller("service", project="svc"), target) is True
    assert files.check("delete_image", caller("member"), target) is True
    assert files.check("delete_image", caller("member", project="p2"), target) is False
    # An undefined reference is the default rule, as in oslo.policy.
    assert files.check("download_image", caller("reader"), target) is True
    assert files.check("download_image", caller("member"), target) is False


def test_a_file_rule_under_a_deprecated_name_overrides_the_new_one() -> None:
    defaults = (*RULES, Rule("new_name", "role:admin", "d", deprecated_names=("old_name",),
                            deprecated_check_str="rule:default"))
    assert "new_name" in compile_rules({"old_name": "role:x"}, defaults).answers
    # Unless the file names the new rule too, or keeps the deprecated default, or points
    # the old name at the new one (oslo.policy's _handle_deprecated_rule).
    assert compile_rules({"old_name": "role:x", "new_name": "role:y"},
                         defaults).answers["new_name"].__str__() == "role:y"
    assert "new_name" not in compile_rules({"old_name": "rule:default"}, defaults).answers
    assert "new_name" not in compile_rules({"old_name": "rule:new_name"}, defaults).answers
    assert compile_rules({"old_name": "role:x"}, defaults).unknown == ()


def test_json_and_policy_d_merge_in_order(tmp_path: Path) -> None:
    write(tmp_path / "policy.json", '{"publicize_image": "role:a", "add_image": "role:a"}')
    policy_d = tmp_path / "policy.d"
    policy_d.mkdir()
    write(policy_d / "20-late.yaml", 'add_image: "role:c"\n')
    write(policy_d / "10-early.yaml", 'add_image: "role:b"\ncopy_from: "!"\n')
    write(policy_d / ".hidden.yaml", 'add_image: "role:hidden"\n')
    (policy_d / "sub").mkdir()
    write(policy_d / "sub" / "x.yaml", 'add_image: "role:sub"\n')
    sources = PolicySources(tmp_path / "policy.json", (policy_d, tmp_path / "missing.d"))
    assert sources.read() == {"publicize_image": "role:a", "add_image": "role:c",
                              "copy_from": "!"}


# --- broken files ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("get_image: [unclosed\n", "not YAML or JSON"),
    ("- get_image\n", "must map rule names to check strings"),
    ("get_image: 3\n", "must be strings"),
    ('get_image: "role:admin or"\n', "cannot parse"),
    ('get_image: "admin"\n', "cannot parse"),
    ('get_image: "role:admin or (role:member"\n', "cannot parse"),
    ('get_image: "http://example.com/check"\n', "not supported"),
    ('a: "rule:b"\nb: "rule:a"\n', "cycle: a -> b -> a"),
    ('default: "rule:nothing"\n', "cycle"),
])
def test_a_broken_file_stops_start_up(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path / "policy.yaml", text)
    with pytest.raises(PolicyFileError, match=problem.replace("(", r"\(")) as caught:
        PolicyFiles.load(path)
    assert "policy" in str(caught.value)


def test_a_missing_policy_file_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(PolicyFileError, match="cannot be read"):
        PolicyFiles.load(tmp_path / "nope.yaml")


def test_deliberate_never_is_no_error(tmp_path: Path) -> None:
    files = PolicyFiles.load(write(tmp_path / "policy.yaml", 'add_image: "!"\n'))
    assert files.check("add_image", caller("admin"), {}) is False


# --- reloading ------------------------------------------------------------------------------

def test_edits_apply_after_the_interval(tmp_path: Path) -> None:
    clock = Clock()
    path = write(tmp_path / "policy.yaml", 'publicize_image: "role:a"\n')
    files = PolicyFiles(PolicySources(path), reload_interval=5.0, clock=clock)
    write(path, 'publicize_image: "role:b"\n')
    assert files.check("publicize_image", caller("a"), {}) is True  # not looked at yet
    clock.now = 5.0
    assert files.check("publicize_image", caller("a"), {}) is False
    assert files.check("publicize_image", caller("b"), {}) is True
    # A rule removed from the file is the default again.
    write(path, "{}\n")
    clock.now = 10.0
    assert files.check("publicize_image", caller("b"), {}) is None


def test_a_broken_edit_keeps_the_last_good_rules(tmp_path: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    path = write(tmp_path / "policy.yaml", 'publicize_image: "role:a"\n')
    files = PolicyFiles(PolicySources(path), reload_interval=1.0, clock=clock)
    for broken in ('publicize_image: "role:a or"\n', "publicize_image: [\n"):
        write(path, broken)
        clock.now += 1.0
        with caplog.at_level(logging.WARNING, logger="glimpse.policy_files"):
            assert files.check("publicize_image", caller("a"), {}) is True
        assert "previous rules stay in force" in caplog.text
        caplog.clear()
    path.unlink()
    clock.now += 1.0
    with caplog.at_level(logging.WARNING, logger="glimpse.policy_files"):
        assert files.check("publicize_image", caller("a"), {}) is True
    assert "cannot be read" in caplog.text
    write(path, 'publicize_image: "role:b"\n')
    clock.now += 1.0
    assert files.check("publicize_image", caller("b"), {}) is True


def test_a_new_file_in_policy_d_is_found(tmp_path: Path) -> None:
    clock = Clock()
    policy_d = tmp_path / "policy.d"
    files = PolicyFiles(PolicySources(None, (policy_d,)), reload_interval=1.0, clock=clock)
    assert files.check("add_image", caller("x"), {}) is None
    policy_d.mkdir()
    write(policy_d / "x.yaml", 'add_image: "role:x"\n')
    clock.now = 1.0
    assert files.check("add_image", caller("x"), {}) is True


def test_interval_zero_reads_once(tmp_path: Path) -> None:
    clock = Clock()
    path = write(tmp_path / "policy.yaml", 'add_image: "role:a"\n')
    files = PolicyFiles(PolicySources(path), reload_interval=0, clock=clock)
    write(path, 'add_image: "role:b"\n')
    clock.now = 1e9
    assert files.check("add_image", caller("a"), {}) is True


def test_unknown_names_are_warned_at_start_up(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path / "policy.yaml", 'get_imagez: "role:a"\nget_image: "rule:mine"\n'
                 'mine: "role:a"\n')
    with caplog.at_level(logging.WARNING, logger="glimpse.policy_files"):
        PolicyFiles.load(path)
    assert "'get_imagez' is not one of glimpse's rules" in caplog.text
    assert "'mine'" not in caplog.text


# --- against oslo.policy --------------------------------------------------------------------

OVERRIDES = [
    CASE_11,
    'service_api: "role:nova"\ndefault: "!"\nget_task: "rule:default or role:x"\n',
    # An operator's own rule names, an undefined reference (the default rule), negation.
    'my_admins: "role:boss or role:cloud_admin"\n'
    'delete_image: "rule:my_admins or rule:undefined_thing"\ndefault: "role:member"\n'
    'get_image: "role:reader and not \'private\':%(visibility)s or rule:my_admins"\n'
    'download_image: "project_id:%(owner)s and role:member"\n'
    'modify_image: "user_id:%(user_id)s"\n',
    'context_is_admin: "role:admin and project_id:p1"\n'
    'add_member: "(role:member or role:reader) and project_id:%(project_id)s"\n',
]
ROLE_SETS = [(), ("reader",), ("member", "reader"), ("admin", "member", "reader"),
             ("service",), ("nova",), ("cloud_admin",), ("image_publicizer", "reader"),
             ("boss",), ("x",)]


def callers() -> Iterator[Principal]:
    for roles, project, service in itertools.product(ROLE_SETS, ["p1", "p2", None],
                                                     [(), ("service",)]):
        yield caller(*roles, project=project, service_roles=service)


def targets() -> Iterator[dict[str, object]]:
    for (project, owner), member, visibility in itertools.product(
            [("p1", "p1"), ("p2", "p2"), ("p1", "p2")], ["p1", None, KeyError],
            ["public", "shared", "private"]):
        target: dict[str, object] = {"project_id": project, "owner": owner,
                                     "visibility": visibility, "user_id": "u1"}
        if member is not KeyError:
            target["member_id"] = member
        yield target


@functools.cache
def oslo_enforcer(text: str, directory: Path) -> oslo.Enforcer:
    path = directory / f"policy-{abs(hash(text))}.yaml"
    path.write_text(text)
    conf = cfg.ConfigOpts()
    conf([], project="glimpse-differential")
    found = oslo.Enforcer(conf, policy_file=str(path))
    found.register_defaults(policy_namespace.list_rules())
    found.load_rules()
    return found


@pytest.mark.parametrize("text", OVERRIDES, ids=["case-11", "base-rules", "own-rules",
                                                 "scoped-admin"])
def test_overridden_policy_matches_oslo_policy(text: str, tmp_path_factory:
                                               pytest.TempPathFactory) -> None:
    """With a file, every rule of ``Policy(PolicyFiles)`` (the file's rules here, the
    predicates with their references elsewhere) against an oslo.policy Enforcer of the same
    file walking its own check trees (what oslopolicy-checker does; ``enforce`` adds only the
    scope check, and these callers are all project-scoped)."""
    directory = tmp_path_factory.mktemp("policy")
    enforcer = oslo_enforcer(text, directory)
    policy = Policy(PolicyFiles.load(write(directory / "policy.yaml", text)))
    # One rule per check tree in force: rules sharing a default share its predicate, and the
    # file's rules are each their own (an Enforcer walk costs about 30 us).
    names = list({str(enforcer.rules[rule.name]) if rule.name not in text else rule.name:
                  rule.name for rule in RULES}.values())
    names += ["my_admins"] * ("my_admins" in text)
    mismatches = []
    for who in callers():
        principal = policy.admitted(who)
        creds = credentials(who)
        # glimpse's one widening: the default service_api counts service-token roles.
        widened = {**creds, "roles": [*creds["roles"], *who.service_roles]}
        for target, name in itertools.product(targets(), names):
            ours = policy.allowed(name, principal, target)
            check = enforcer.rules[name]
            theirs = bool(check(target, widened, enforcer, name))
            if ours != theirs:
                mismatches.append((name, who.roles, who.owner, who.service_roles, target, ours))
    assert not mismatches, f"{len(mismatches)} disagreements, e.g. {mismatches[:3]}"


# --- settings -------------------------------------------------------------------------------

def test_settings_from_the_environment_and_a_file(tmp_path: Path) -> None:
    env = {"GLIMPSE_POLICY_FILE": "/etc/glimpse/policy.yaml",
           "GLIMPSE_POLICY_DIRS": "/etc/glimpse/policy.d, /srv/policy.d",
           "GLIMPSE_POLICY_RELOAD_INTERVAL": "2.5"}
    loaded = settings_mod.load(environ=env)
    assert loaded.policy_file == Path("/etc/glimpse/policy.yaml")
    assert loaded.policy_dirs == (Path("/etc/glimpse/policy.d"), Path("/srv/policy.d"))
    assert loaded.policy_reload_interval == 2.5
    assert settings_mod.from_json(settings_mod.to_json(loaded)) == loaded
    config = tmp_path / "glimpse.toml"
    config.write_text('policy_file = "p.yaml"\npolicy_dirs = ["a.d", "b.d"]\n')
    loaded = settings_mod.load(config, environ={})
    assert loaded.policy_file == Path("p.yaml")
    assert loaded.policy_dirs == (Path("a.d"), Path("b.d"))
    assert settings_mod.from_json(settings_mod.to_json(loaded)) == loaded
    assert settings_mod.load(environ={}).policy_file is None


@pytest.mark.parametrize(("env", "problem"), [
    ({"GLIMPSE_ENFORCE_NEW_DEFAULTS": "false"}, "enforce_new_defaults = false is not"),
    ({"GLIMPSE_POLICY_RELOAD_INTERVAL": "-1"}, "policy_reload_interval"),
])
def test_settings_refused(env: dict[str, str], problem: str) -> None:
    with pytest.raises(Invalid, match=problem):
        settings_mod.load(environ=env)


def test_a_server_without_policy_files_never_imports_oslo_policy() -> None:
    code = ("import sys; from glimpse import app, settings; from glimpse.cli import main; "
            "assert app.policy_overrides(settings.Settings()) is None; "
            "print(sorted(m for m in sys.modules if m.startswith('oslo_policy')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_without_oslo_policy_a_policy_file_is_a_configuration_error(tmp_path: Path) -> None:
    code = ("import sys; sys.modules['oslo_policy'] = None; from pathlib import Path; "
            "from glimpse import app, settings; from glimpse.errors import Invalid\n"
            "try:\n"
            f"    app.policy_overrides(settings.Settings(policy_file=Path('{tmp_path}/p')))\n"
            "except Invalid as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert "need oslo.policy, which is not installed (install glimpse[policy])" in done.stdout
