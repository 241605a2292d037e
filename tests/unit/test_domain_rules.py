"""Lifecycle table, visibility predicate, policy and value rules."""

from __future__ import annotations

import ast
import pathlib
import sys

import pytest

from glimpse.domain import lifecycle, policy
from glimpse.domain.model import Image, ImageInput, Principal, Scope, Status
from glimpse.domain.validation import validate_input
from glimpse.errors import Conflict, Invalid
from glimpse.settings import DEFAULT_CONTAINER_FORMATS, DEFAULT_DISK_FORMATS

ADMIN = Principal(tenant=None, user=None, roles=(), is_admin=True, owner=None)
ALICE = Principal(tenant="alice", user="u1", roles=("member",), is_admin=False, owner="alice")
BOB = Principal(tenant="bob", user="u2", roles=("member",), is_admin=False, owner="bob")
NOBODY = Principal(tenant=None, user="u3", roles=("member",), is_admin=False, owner=None)


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
        (BOB, image(owner="alice", is_public=True), False, True),
        (BOB, image(owner=None), False, True),
        (NOBODY, image(owner="alice"), True, False),
        (ALICE, image(owner="alice", deleted=True, status=Status.DELETED), False, False),
    ],
)
def test_can_see(who: Principal, img: Image, member: bool, visible: bool) -> None:
    assert policy.can_see(who, img, lambda: member) is visible


def test_can_see_asks_membership_last() -> None:
    assert policy.can_see(ALICE, image(owner="alice"), never)
    assert policy.can_see(BOB, image(is_public=True, owner="alice"), never)


def test_can_modify() -> None:
    assert policy.can_modify(ADMIN, image(owner="alice"))
    assert policy.can_modify(ALICE, image(owner="alice"))
    assert not policy.can_modify(BOB, image(owner="alice", is_public=True))
    assert not policy.can_modify(NOBODY, image(owner=None))
    assert not policy.can_modify(ALICE, image(owner=None))


@pytest.mark.parametrize(
    ("who", "is_public", "scope"),
    [
        (ALICE, None, Scope.VISIBLE), (ALICE, False, Scope.VISIBLE), (ALICE, True, Scope.VISIBLE),
        (ADMIN, True, Scope.VISIBLE), (ADMIN, None, Scope.ALL), (ADMIN, False, Scope.NON_PUBLIC),
    ],
)
def test_list_scope(who: Principal, is_public: bool | None, scope: Scope) -> None:
    assert policy.list_scope(who, is_public) is scope


def test_lifecycle() -> None:
    assert lifecycle.can_transition(Status.QUEUED, Status.SAVING)
    assert lifecycle.can_transition(Status.SAVING, Status.KILLED)
    assert not lifecycle.can_transition(Status.KILLED, Status.ACTIVE)
    assert not lifecycle.can_transition(Status.ACTIVE, Status.SAVING)
    for status in Status:
        assert not lifecycle.can_transition(Status.DELETED, status)
    with pytest.raises(Conflict):
        lifecycle.check_transition(Status.ACTIVE, Status.QUEUED)


def check(**fields: object) -> ImageInput:
    data = ImageInput(fields=dict(fields))
    validate_input(data, DEFAULT_DISK_FORMATS, DEFAULT_CONTAINER_FORMATS)
    return data


def test_amazon_pairing() -> None:
    assert check(disk_format="aki").fields["container_format"] == "aki"
    assert check(container_format="ari").fields["disk_format"] == "ari"
    with pytest.raises(Invalid, match="Invalid mix of disk and container formats"):
        check(disk_format="aki", container_format="bare")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"disk_format": "floppy"}, "Invalid disk format 'floppy' for image."),
        ({"container_format": "box"}, "Invalid container format 'box' for image."),
        ({"name": "x" * 256}, "255"),
        ({"checksum": "a" * 33}, "Invalid checksum"),
        ({"min_ram": 2147483648}, "'min_ram' value out of range"),
        ({"min_disk": 2147483648}, "'min_disk' value out of range"),
        ({"size": 2**63}, "out of range"),
    ],
)
def test_value_rules(fields: dict[str, object], message: str) -> None:
    with pytest.raises(Invalid, match=message.replace("(", r"\(").replace(".", r"\.")):
        check(**fields)


def test_domain_imports_only_stdlib_and_errors() -> None:
    """The dependency rule of ARCHITECTURE.md: the domain and streams know no framework."""
    root = pathlib.Path(__file__).parents[2] / "glimpse"
    allowed = ("glimpse.errors", "glimpse.domain", "glimpse.streams")
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
