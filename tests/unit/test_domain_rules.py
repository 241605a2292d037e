"""Lifecycle table, visibility predicate, policy and value rules."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

from glimpse.domain import lifecycle, policy
from glimpse.domain.model import Image, Principal, Scope, Status, Visibility
from glimpse.domain.validation import (
    MAX_VALUE_BYTES,
    validate_fields,
    validate_properties,
    validate_property_values,
)
from glimpse.errors import Conflict, Forbidden, Invalid
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

ADMIN = Principal(tenant=None, user=None, roles=(), is_admin=True, owner=None)
ALICE = Principal(tenant="alice", user="u1", roles=("member", "reader"),
                  is_admin=False, owner="alice")
BOB = Principal(tenant="bob", user="u2", roles=("member", "reader"), is_admin=False, owner="bob")
NOBODY = Principal(tenant=None, user="u3", roles=("member", "reader"), is_admin=False, owner=None)


def image(**kw: object) -> Image:
    return Image(id="i", status=kw.pop("status", Status.ACTIVE), **kw)  # type: ignore[arg-type]


def never() -> bool:
    raise AssertionError("membership should not have been asked")


@pytest.mark.parametrize(
    ("who", "img", "member", "visible"),
    [
        (ADMIN, image(owner="alice", deleted=True, status=Status.DELETED), False, True),
        (ALICE, image(owner="alice"), False, True),
        (BOB, image(owner="alice"), False, False),
        (BOB, image(owner="alice"), True, True),
        (BOB, image(owner="alice", visibility=Visibility.PUBLIC), False, True),
        (BOB, image(owner="alice", visibility=Visibility.COMMUNITY), False, True),
        # A membership has effect only while the image is shared.
        (BOB, image(owner="alice", visibility=Visibility.PRIVATE), True, False),
        (ALICE, image(owner="alice", visibility=Visibility.PRIVATE), False, True),
        (BOB, image(owner=None), False, True),
        (NOBODY, image(owner="alice"), True, False),
        (ALICE, image(owner="alice", deleted=True, status=Status.DELETED), False, False),
    ],
)
def test_can_see(who: Principal, img: Image, member: bool, visible: bool) -> None:
    assert policy.can_see(who, img, lambda: member) is visible


def test_can_see_asks_membership_last() -> None:
    assert policy.can_see(ALICE, image(owner="alice"), never)
    assert policy.can_see(BOB, image(visibility=Visibility.PUBLIC, owner="alice"), never)
    assert not policy.can_see(BOB, image(visibility=Visibility.PRIVATE, owner="alice"), never)


@pytest.mark.parametrize("requested", list(Scope))
def test_list_scope(requested: Scope) -> None:
    assert policy.list_scope(ALICE, requested) is Scope.VISIBLE
    assert policy.list_scope(ADMIN, requested) is requested


def test_lifecycle() -> None:
    assert lifecycle.can_transition(Status.QUEUED, Status.SAVING)
    assert lifecycle.can_transition(Status.SAVING, Status.KILLED)
    assert not lifecycle.can_transition(Status.KILLED, Status.ACTIVE)
    assert not lifecycle.can_transition(Status.ACTIVE, Status.SAVING)
    for status in Status:
        assert not lifecycle.can_transition(Status.DELETED, status)
    with pytest.raises(Conflict):
        lifecycle.check_transition(Status.ACTIVE, Status.QUEUED)


def test_lifecycle_failure_rules() -> None:
    """Both APIs' failure rules are edges of the one table: v1 kills, v2 requeues."""
    for rule in lifecycle.FailureRule:
        assert lifecycle.can_transition(Status.SAVING, rule.status)
    assert lifecycle.FailureRule.KILL.status is Status.KILLED
    assert lifecycle.FailureRule.REQUEUE.status is Status.QUEUED
    assert lifecycle.can_transition(Status.UPLOADING, Status.IMPORTING)
    assert lifecycle.can_transition(Status.IMPORTING, Status.QUEUED)


def test_every_status_write_goes_through_the_table() -> None:
    """No module writes a status but by a transition the table checked: a literal
    ``{"status": Status.X`` in a change is only allowed next to a check_transition call."""
    root = pathlib.Path(__file__).parents[2] / "glimpse" / "domain"
    for path in root.glob("*.py"):
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):
            if '"status": Status.' in line or '"status": target' in line:
                window = "\n".join(text.splitlines()[max(0, line_no - 4):line_no + 2])
                assert "check_transition" in window or "_move" in window, (
                    f"{path.name}:{line_no} writes a status without the lifecycle table")


def check(**fields: object) -> dict[str, object]:
    data = dict(fields)
    validate_fields(data, DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    return data


def test_amazon_pairing() -> None:
    assert check(disk_format="aki")["container_format"] == "aki"
    assert check(container_format="ari")["disk_format"] == "ari"
    with pytest.raises(Invalid, match="Invalid mix of disk and container formats"):
        check(disk_format="aki", container_format="bare")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"disk_format": "floppy"}, "Invalid disk format 'floppy' for image."),
        ({"container_format": "box"}, "Invalid container format 'box' for image."),
        ({"name": "x" * 256}, "255"),
        ({"checksum": "a" * 33}, "Invalid checksum: it can't exceed 32 characters"),
        ({"visibility": "everyone"}, "'visibility' must be one of"),
        ({"min_ram": -1}, "can't be negative"),
        ({"min_ram": 2147483648}, "'min_ram' value out of range"),
        ({"min_disk": 2147483648}, "'min_disk' value out of range"),
        ({"size": 2**63}, "out of range"),
    ],
)
def test_value_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(".", r"\.")):
        check(**fields)


@pytest.mark.parametrize("key", ["os_glance_import_task", "os_glance_importing_to_stores",
                                 "os_glance_failed_import", "os_glance_stage_host", "os_glance"])
def test_reserved_properties_are_refused(key: str) -> None:
    with pytest.raises(Forbidden, match="reserved"):
        validate_properties([key])
    validate_properties(["os_glancer_x"[:0] + "os_distro"])


def test_domain_imports_only_stdlib_and_errors() -> None:
    """The dependency rule of ARCHITECTURE.md: the domain and streams know no framework."""
    root = pathlib.Path(__file__).parents[2] / "glimpse"
    # glimpse.redaction is standard library only, written to be usable from any layer.
    allowed = ("glimpse.errors", "glimpse.domain", "glimpse.streams", "glimpse.redaction")
    for folder in ("domain", "streams"):
        for path in (root / folder).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    assert top in sys.stdlib_module_names or name.startswith(allowed) or (
                        top == "__future__"
                    ), f"{path.name} imports {name}"



def test_property_values_fit_the_narrowest_column() -> None:
    validate_property_values({"a": "x" * MAX_VALUE_BYTES, "b": None, "c": "\u2713" * 21845})
    for value in ("x" * (MAX_VALUE_BYTES + 1), "\u2713" * 21846, "\U0001f600" * 16384):
        with pytest.raises(Invalid):
            validate_property_values({"a": value})
