"""Who may see and change what (spec §10, §11.6). The one place these rules live."""

from __future__ import annotations

from collections.abc import Callable

from glimpse.domain.model import Image, Principal, Scope


def can_see(principal: Principal, image: Image, is_member: Callable[[], bool]) -> bool:
    """Read access. ``is_member`` is asked last, only when nothing cheaper decided."""
    if principal.is_admin:
        return True
    if image.deleted:
        return False
    if image.owner is None or image.is_public:
        return True
    if principal.owner is not None and image.owner == principal.owner:
        return True
    return principal.owner is not None and is_member()


def owns(principal: Principal, image: Image) -> bool:
    return principal.owner is not None and image.owner == principal.owner


def can_modify(principal: Principal, image: Image) -> bool:
    """Write access to the image itself: admins and the owner, nobody else."""
    return principal.is_admin or owns(principal, image)


def list_scope(principal: Principal, is_public: bool | None) -> Scope:
    """Which images a list starts from (spec §9.4).

    Non-admins always list what they can see, and their ``is_public`` parameter is ignored, as
    in the reference (Q8). Admins list the same set unless they ask for ``is_public=none``
    (everything) or ``false`` (every private image). The anonymous admin has no tenant, so its
    default list is the public images only (Q10, improved).
    """
    if not principal.is_admin:
        return Scope.VISIBLE
    if is_public is None:
        return Scope.ALL
    if is_public is False:
        return Scope.NON_PUBLIC
    return Scope.VISIBLE

