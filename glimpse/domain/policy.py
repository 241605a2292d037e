"""Who may see and change what. The one place these rules live."""

from __future__ import annotations

from collections.abc import Callable

from glimpse.domain.model import Image, Principal, Scope, Visibility

# Visible to every caller, whatever their project.
OPEN_VISIBILITIES = frozenset({Visibility.PUBLIC, Visibility.COMMUNITY})


def can_see(principal: Principal, image: Image, is_member: Callable[[], bool]) -> bool:
    """Read access. ``is_member`` (a membership of any status) is asked last, only when
    nothing cheaper decided, and only counts while the image is shared."""
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


def can_modify(principal: Principal, image: Image) -> bool:
    """Write access to the image itself: admins and the owner, nobody else."""
    return principal.is_admin or owns(principal, image)


def is_service(principal: Principal) -> bool:
    """Another cloud service (nova, cinder) acting with its service role (its own token's, or
    the X-Service-Token's it sends beside a user's), or an admin: who may read an image's
    locations (Glance's ``service_api`` rule)."""
    return (principal.is_admin or "service" in principal.roles
            or "service" in principal.service_roles)


def can_read_image_locations(principal: Principal, image: Image) -> bool:
    """Who is shown an image's locations in the image itself (v2's legacy ``locations`` and
    ``direct_url``, when the operator turns them on): services and admins, and the owner.
    Members and the public never are: a shared or public image's URLs are not theirs to see
    (OSSN-0065, OSSN-0090; Glance's get_image_location rule)."""
    return is_service(principal) or owns(principal, image)


def may_set_visibility(principal: Principal, visibility: Visibility) -> bool:
    """Only admins publicize images."""
    return visibility is not Visibility.PUBLIC or principal.is_admin


def list_scope(principal: Principal, requested: Scope) -> Scope:
    """Which images a list starts from: non-admins always list what they can see; admins
    what they ask for."""
    return requested if principal.is_admin else Scope.VISIBLE
