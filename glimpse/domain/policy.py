"""Who may do what: Glance's policy rules by name, evaluated cheaply. The one place authorization
lives (with its table, ``policy_rules``).

Every operation of v1 and v2 is authorized by a named rule (``Policy.allowed``/``enforce``):
``get_image``, ``modify_image``, ``add_member``... with Glance's secure-RBAC defaults (admin;
project member; project reader; service role). Each default runs as a hand-written predicate
equal to its check string (about a microsecond; no oslo.policy per request), unless the
operator's ``RuleOverrides`` (a policy file) decides the rule.

Two gates, as in Glance: visibility (``can_see``, the SQL scope of lists) says which images
exist for a caller; the rules say what it may do with them. A refused ``get_image`` is 404, as
is any refusal on an image the caller may not see; other refusals are 403.

Scope: Glance's rules are all project-scoped, so a caller whose token is system- or
domain-scoped is refused by every rule (403); an unscoped token holds no roles and passes
none. A caller's "project" in the checks is its ``owner`` (the project, or the user with
``owner_is_tenant = false`` in noauth mode), compared as oslo.policy compares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from glimpse.domain import policy_rules as rules
from glimpse.domain.model import Image, Principal, Scope, Visibility
from glimpse.domain.policy_rules import BY_NAME, DEPRECATED_NAMES, RULES, Operation, Rule
from glimpse.errors import Forbidden

__all__ = [
    "BY_NAME", "DEPRECATED_NAMES", "RULES", "ImageTarget", "Operation", "Policy", "Rule",
    "RuleOverrides", "Target",
]

Target = Mapping[str, object]
# Roles as Glance's check strings name them (roles are lower-cased by the identity layer).
ADMIN_ROLE, MEMBER_ROLE, READER_ROLE, SERVICE_ROLE = "admin", "member", "reader", "service"
SCOPE_MESSAGE = "Only a project-scoped token may use the image API"
_EMPTY: Target = {}
# Visibilities of images every reader may be shown ('community':%(visibility)s or ...).
_OPEN = frozenset({"community", "public", "shared"})
# Visible to every caller, whatever their project (the visibility gate below).
OPEN_VISIBILITIES = frozenset({Visibility.PUBLIC, Visibility.COMMUNITY})


class RuleOverrides(Protocol):
    """The operator's rules (glimpse.policy_files: policy.yaml and policy.d).

    ``check`` decides ``rule`` for this caller and target, or answers None when the operator
    does not override ``rule``; None must depend on the rule alone, never on the caller or the
    target (``Policy.visible`` relies on it). A name that is not in RULES is asked too, so that
    rules the operator defines for itself (and names in its other rules) work.
    """

    def check(self, rule: str, principal: Principal, target: Target) -> bool | None: ...


def in_scope(principal: Principal) -> bool:
    """Glance's rules are all project-scoped: system- and domain-scoped tokens pass none
    (oslo.policy's scope check; an unscoped token counts as a project one, and holds no
    roles)."""
    return principal.system_scope is None and principal.domain_id is None


class Policy:
    """The rules by name: a rule the operator overrides is decided by ``overrides``, any other
    by its default's predicate. One per server, shared by every service."""

    def __init__(self, overrides: RuleOverrides | None = None) -> None:
        self.overrides = overrides

    def allowed(self, rule: str, principal: Principal, target: Target = _EMPTY) -> bool:
        if not in_scope(principal):
            return False
        overrides = self.overrides
        if overrides is not None:
            decided = overrides.check(rule, principal, target)
            if decided is not None:
                return decided
        predicate = _PREDICATES.get(rule)
        # A name the code does not know and the operator did not define: refused, as
        # oslo.policy refuses a rule it has no definition of (and no default_rule).
        return predicate is not None and predicate(self, principal, target)

    def enforce(self, rule: str, principal: Principal, target: Target = _EMPTY,
                message: str | None = None, code: str | None = None) -> None:
        """``allowed`` or Forbidden (with ``message``, or Glance's wording; ``code`` for an
        API that words this refusal its own way)."""
        self.require_scope(principal)
        if not self.allowed(rule, principal, target):
            raise Forbidden(message or f"You are not authorized to complete {rule} action.",
                            code=code)

    def require_scope(self, principal: Principal) -> None:
        """Forbidden (403 on every image API, never 404) for a system- or domain-scoped
        caller."""
        if not in_scope(principal):
            raise Forbidden(SCOPE_MESSAGE, code="scope")

    def admitted(self, principal: Principal) -> Principal:
        """The caller with ``is_admin`` set by the ``context_is_admin`` rule (an operator's
        override included): evaluated once per request by the identity layer, then read by
        every rule that names it and by the visibility gate (admins see everything)."""
        admin = self.allowed("context_is_admin", principal)
        return principal if admin == principal.is_admin else dataclasses.replace(
            principal, is_admin=admin)

    def may_see(self, principal: Principal, image: Image, is_member: Callable[[], bool]) -> bool:
        """Whether the image exists for the caller: the visibility gate (``can_see``, the same
        as a list's SQL scope), then ``get_image``. Scope is the caller's to check first
        (``require_scope``): out of scope is 403, not 404.

        An image without an owner (made in noauth mode by a caller without a project) is
        readable by everyone, as the v1 reference made it: the default ``get_image`` is not
        asked about it (it could never match its project); an operator's override is."""
        if not can_see(principal, image, is_member):
            return False
        target = ImageTarget(image, principal.owner)
        overrides = self.overrides
        if overrides is not None:
            decided = overrides.check("get_image", principal, target)
            if decided is not None:
                return decided
        return image.owner is None or _get_image(self, principal, target)

    def visible(self, principal: Principal, images: Sequence[Image]) -> list[Image]:
        """A list page as the caller may see it, the hook for an overridden ``get_image``.

        The SQL visibility scope filtered the page already, and the default ``get_image`` is
        true of every image in it for any caller that passed ``get_images`` (which needs
        reader or admin): so rows are checked one by one only while the operator overrides
        ``get_image``. The first row tells (``check`` answers None for a rule not
        overridden), so the defaults cost nothing per row."""
        overrides = self.overrides
        if overrides is None or not images:
            return list(images)
        shown = []
        for image in images:
            decided = overrides.check("get_image", principal, ImageTarget(image, principal.owner))
            if decided is None:
                return list(images)
            if decided:
                shown.append(image)
        return shown


class ImageTarget(Mapping[str, object]):
    """An image as Glance's rules read it (glance/api/policy.py ImageTarget): ``project_id``
    and ``owner`` are the owner, ``member_id`` (``member``) the caller's project when the
    image is shared and the caller does not own it (Glance's database layer sets it so:
    the visibility gate found the image through a membership), ``id``/``image_id``,
    ``visibility``, the other core fields, then the image's properties. Built per check
    without copying: keys are looked up when a rule reads them."""

    __slots__ = ("_caller", "_image")
    _CORE = ("status", "name", "size", "virtual_size", "checksum", "os_hash_algo",
             "os_hash_value", "disk_format", "container_format", "min_disk", "min_ram",
             "protected", "os_hidden", "created_at", "updated_at", "deleted_at", "deleted",
             "tags")
    _KEYS = ("project_id", "owner", "member_id", "member", "id", "image_id", "visibility",
             *_CORE)

    def __init__(self, image: Image, caller: str | None) -> None:
        self._image = image
        self._caller = caller

    def __getitem__(self, key: str) -> object:
        image = self._image
        if key in ("project_id", "owner"):
            return image.owner
        if key in ("member_id", "member"):
            return self._member()
        if key in ("id", "image_id"):
            return image.id
        if key == "visibility":
            return str(image.visibility)
        if key in self._CORE:
            value: object = getattr(image, key)
            return value
        return image.properties[key]

    def get(self, key: str, default: object = None) -> object:
        try:
            return self[key]
        except KeyError:
            return default

    def _member(self) -> str | None:
        image, caller = self._image, self._caller
        if image.visibility is Visibility.SHARED and caller is not None and caller != image.owner:
            return caller
        return None

    def __iter__(self) -> Iterator[str]:
        yield from self._KEYS
        yield from (k for k in self._image.properties if k not in self._KEYS)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def new_image_target(owner: str | None, visibility: object) -> dict[str, object]:
    """Glance's target for a create (add_image, publicize_image...): the owner-to-be as both
    project_id and owner, and the visibility asked for."""
    return {"project_id": owner, "owner": owner, "visibility": str(visibility)}


# -- the defaults' predicates -------------------------------------------------------------------
# One per rule, each equal to its check string in policy_rules (tests/unit/test_policy.py holds
# them to it over a matrix). ``rule:context_is_admin`` reads ``principal.is_admin`` (set by
# ``Policy.admitted``); other ``rule:`` references go through the policy, so that an operator's
# override of service_api, default or metadef_admin reaches the rules that name them.

Predicate = Callable[[Policy, Principal, Target], bool]


_MISSING = object()


def _mine(principal: Principal, target: Target, key: str) -> bool:
    """``project_id:%(key)s`` as oslo.policy evaluates it: the target's value as text equals
    the caller's project as text; a target without the key matches nothing. As there, a
    caller without a project matches a target whose value is None ('None' == 'None'): only
    noauth mode has such callers (keystone mode refuses tokens without a project), where an
    image without owner is as much theirs as anyone's."""
    value = target.get(key, _MISSING)
    return value is not _MISSING and str(value) == str(principal.owner)


def _seen_by(principal: Principal, target: Target) -> bool:
    """project_id:%(project_id)s or project_id:%(member_id)s or 'community'/'public'/'shared'
    :%(visibility)s"""
    return (_mine(principal, target, "project_id") or _mine(principal, target, "member_id")
            or str(target.get("visibility")) in _OPEN)


def _anyone(policy: Policy, principal: Principal, target: Target) -> bool:
    return True


def _role_admin(policy: Policy, principal: Principal, target: Target) -> bool:
    return ADMIN_ROLE in principal.roles


def _admin(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin


def _service_api(policy: Policy, principal: Principal, target: Target) -> bool:
    # glimpse also counts an X-Service-Token's roles: nova and cinder send one beside the
    # user's token (oslo.policy's role check reads the user token's roles only).
    roles = principal.roles
    return (SERVICE_ROLE in roles or ADMIN_ROLE in roles
            or SERVICE_ROLE in principal.service_roles)


def _admin_or_project_member(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (MEMBER_ROLE in principal.roles
                                  and _mine(principal, target, "project_id"))


def _admin_or_project_reader(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (READER_ROLE in principal.roles
                                  and _mine(principal, target, "project_id"))


def _add_image(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (MEMBER_ROLE in principal.roles
                                  and _mine(principal, target, "project_id")
                                  and _mine(principal, target, "owner"))


def _get_image(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (READER_ROLE in principal.roles
                                  and _seen_by(principal, target))


def _download_image(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (MEMBER_ROLE in principal.roles
                                  and _seen_by(principal, target))


def _get_members(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (READER_ROLE in principal.roles and (
        _mine(principal, target, "project_id") or _mine(principal, target, "member_id")))


def _modify_member(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (MEMBER_ROLE in principal.roles
                                  and _mine(principal, target, "member_id"))


def _add_image_location(policy: Policy, principal: Principal, target: Target) -> bool:
    return policy.allowed("service_api", principal, target) or (
        MEMBER_ROLE in principal.roles and _mine(principal, target, "project_id")
        and _mine(principal, target, "owner"))


def _fetch_image_location(policy: Policy, principal: Principal, target: Target) -> bool:
    return policy.allowed("service_api", principal, target)


def _admin_or_service(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or policy.allowed("service_api", principal, target)


def _get_namespace(policy: Policy, principal: Principal, target: Target) -> bool:
    return principal.is_admin or (READER_ROLE in principal.roles and (
        _mine(principal, target, "project_id") or str(target.get("visibility")) == "public"))


def _metadef_admin(policy: Policy, principal: Principal, target: Target) -> bool:
    return policy.allowed("metadef_admin", principal, target)


def _default(policy: Policy, principal: Principal, target: Target) -> bool:
    return policy.allowed("default", principal, target)


def _predicate_of(rule: Rule) -> Predicate:
    """The predicate of a default check string (every one in RULES is known here)."""
    return _BY_CHECK_STR[rule.check_str] if rule.name not in _BY_NAME_SPECIAL \
        else _BY_NAME_SPECIAL[rule.name]


_BY_NAME_SPECIAL: dict[str, Predicate] = {
    # Rules whose check strings others share but which must not call themselves.
    "default": _anyone,
    "metadef_default": _anyone,
    "metadef_admin": _admin,
}
_BY_CHECK_STR: dict[str, Predicate] = {
    "": _anyone,
    "role:admin": _role_admin,
    "role:service or role:admin": _service_api,
    "rule:context_is_admin": _admin,
    "rule:default": _default,
    "rule:service_api": _fetch_image_location,
    "rule:metadef_admin": _metadef_admin,
    rules.ADMIN_OR_PROJECT_MEMBER: _admin_or_project_member,
    rules.ADMIN_OR_PROJECT_READER: _admin_or_project_reader,
    rules.ADMIN_OR_PROJECT_MEMBER_CREATE_IMAGE: _add_image,
    rules.ADMIN_OR_PROJECT_READER_GET_IMAGE: _get_image,
    rules.ADMIN_OR_PROJECT_MEMBER_DOWNLOAD_IMAGE: _download_image,
    rules.ADMIN_OR_PROJECT_READER_OR_SHARED_MEMBER: _get_members,
    rules.ADMIN_OR_SHARED_MEMBER: _modify_member,
    rules.SERVICE_OR_PROJECT_MEMBER: _add_image_location,
    rules.ADMIN_OR_SERVICE_ROLE: _admin_or_service,
    rules.ADMIN_OR_PROJECT_READER_GET_NAMESPACE: _get_namespace,
}
# Every default of the table, by rule name (an import-time KeyError names a check string that
# has no predicate).
_PREDICATES: dict[str, Predicate] = {rule.name: _predicate_of(rule) for rule in RULES}
DEFAULT_POLICY = Policy()


# -- the visibility gate --------------------------------------------------------------------------

def can_see(principal: Principal, image: Image, is_member: Callable[[], bool]) -> bool:
    """Whether an image exists for the caller at all, before any rule: the same gate as a
    list's SQL scope (Glance's database layer). ``is_member`` (a membership of any status) is
    asked last, only when nothing cheaper decided, and only counts while the image is
    shared."""
    if principal.is_admin:
        return True
    if image.deleted:
        return False
    if image.owner is None or image.visibility in OPEN_VISIBILITIES:
        return True
    if owns(principal, image):
        return True
    return (image.visibility is Visibility.SHARED and principal.owner is not None
            and is_member())


def owns(principal: Principal, image: Image) -> bool:
    return principal.owner is not None and image.owner == principal.owner


def list_scope(principal: Principal, requested: Scope) -> Scope:
    """Which images a list starts from: non-admins always list what they can see; admins
    what they ask for."""
    return requested if principal.is_admin else Scope.VISIBLE
