"""The membership service: who an image is shared with, and who may change that.

A membership has a status (pending, accepted, rejected) and, for v1, ``can_share``. Members
see the image while it is shared, whatever their status; lists show it to accepted ones.

v1 (add, replace, remove) shares images of any visibility, lets a member with can_share
share further and answers 404 to whoever may not share. v2 (invite, set_status, uninvite,
and the reads with ``shared_only``) follows the Images API v2 (spec v2-api.md §2.9): members
only on shared images (403 otherwise), 403 to a caller who sees the image but does not own
it, and each member sets its own status.
"""

from __future__ import annotations

from glimpse.domain import ids, policy
from glimpse.domain.limits import Limits
from glimpse.domain.model import Image, Member, MemberStatus, Principal, Visibility
from glimpse.domain.ports import ImageRepository
from glimpse.domain.validation import check_member_id
from glimpse.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated

NOT_SHARED = "Only shared images have members."


class MemberService:
    def __init__(self, repo: ImageRepository, limits: Limits) -> None:
        self._repo = repo
        self._check_quota = limits.check_members

    def list_members(
        self, principal: Principal, image_id: str, shared_only: bool = False
    ) -> list[Member]:
        """Every membership for the owner and admins, a member's own to the member, none to
        others. ``shared_only`` (v2): Forbidden unless the image is shared."""
        image = self._live_image(principal, image_id)
        if shared_only:
            _require_shared(image)
        return self._shown(principal, image)

    def get(
        self, principal: Principal, image_id: str, member_id: str, shared_only: bool = False
    ) -> Member:
        """One membership, to whoever list_members shows it; NotFound to others."""
        for member in self.list_members(principal, image_id, shared_only):
            if member.member_id == member_id:
                return member
        raise NotFound("Membership could not be found.")

    # -- v2 -----------------------------------------------------------------------------------

    def invite(self, principal: Principal, image_id: str, member_id: str) -> Member:
        """A new membership, pending: by the owner or an admin, of a shared image. A member
        removed and invited again starts pending again."""
        check_member_id(member_id)
        image = self._owned_shared_image(principal, image_id)
        members = self._repo.members(image.id)
        if any(m.member_id == member_id for m in members):
            raise Conflict(f"Member {member_id} already has a membership of image {image.id}.")
        self._check_quota(len(members) + 1)
        # Both checked again under the image's lock: concurrent invites may not pass together.
        return self._repo.add_member(image.id, member_id, MemberStatus.PENDING,
                                     self._check_quota)

    def set_status(
        self, principal: Principal, image_id: str, member_id: str, status: MemberStatus
    ) -> Member:
        """A member accepts, rejects or puts back to pending its own membership (admins may
        set anyone's); any status may follow any other. The owner may not: Forbidden."""
        if status not in tuple(MemberStatus):
            raise Invalid(f"Invalid status: one of {', '.join(MemberStatus)} is expected.")
        image = self._live_image(principal, image_id)
        _require_shared(image)
        if not any(m.member_id == member_id for m in self._shown(principal, image)):
            raise NotFound("Membership could not be found.")
        if not principal.is_admin and member_id != principal.owner:
            raise Forbidden("Only the member itself may change the status of a membership.")
        member = self._repo.set_member_status(image.id, member_id, MemberStatus(status))
        if member is None:  # removed meanwhile
            raise NotFound("Membership could not be found.")
        return member

    def uninvite(self, principal: Principal, image_id: str, member_id: str) -> None:
        """Remove a membership: the owner or an admin, of a shared image."""
        image = self._owned_shared_image(principal, image_id)
        if not self._repo.remove_member(image.id, member_id):
            raise NotFound("Membership could not be found.")

    # -- v1 -----------------------------------------------------------------------------------

    def add(
        self, principal: Principal, image_id: str, member_id: str, can_share: bool | None,
        status: MemberStatus,
    ) -> None:
        """Add the membership with ``status`` (an existing one keeps its status)."""
        image = self._shareable_image(principal, image_id)
        check_member_id(member_id)
        existing = {m.member_id for m in self._repo.members(image.id)}
        # Unlike the reference (Q18), re-adding an existing member does not count twice.
        count = len(existing | {member_id})
        self._check_quota(count)
        # Checked again under the image's lock: concurrent adds may not pass the quota together.
        self._repo.set_member(image.id, member_id, can_share, self._check_quota,
                              status=None if member_id in existing else status)

    def replace(
        self, principal: Principal, image_id: str, members: list[tuple[str, bool | None]],
        status: MemberStatus,
    ) -> None:
        """Make the memberships exactly ``members``; new ones get ``status``."""
        image = self._shareable_image(principal, image_id)
        for member_id, _ in members:
            check_member_id(member_id)
        self._check_quota(len({m for m, _ in members}))
        self._repo.replace_members(image.id, members, status)

    def remove(self, principal: Principal, image_id: str, member_id: str) -> None:
        image = self._shareable_image(principal, image_id)
        if not self._repo.remove_member(image.id, member_id):
            raise NotFound("Membership could not be found.")

    def shared_images(self, principal: Principal, member_id: str) -> list[Member]:
        shared = self._repo.shared_with(member_id)
        if principal.is_admin:
            return [m for m, _ in shared]
        if principal.owner is None:
            return []
        if member_id == principal.owner:
            return [m for m, _ in shared]
        return [m for m, owner in shared if owner == principal.owner]

    # -- helpers ------------------------------------------------------------------------------

    def _shown(self, principal: Principal, image: Image) -> list[Member]:
        members = self._repo.members(image.id)
        if principal.is_admin or policy.owns(principal, image):
            return members
        return [m for m in members if m.member_id == principal.owner]

    def _live_image(self, principal: Principal, image_id: str) -> Image:
        image = ids.find(self._repo, image_id)
        if image is None:
            raise NotFound(f"Image {image_id} not found.")
        if image.deleted and (principal.is_admin or policy.owns(principal, image)):
            raise NotFound(f"Image with identifier {image_id} has been deleted.")
        if not policy.can_see(
            principal, image, lambda: self._repo.is_member(image.id, principal.owner or "")
        ):
            raise NotFound(f"Image {image_id} not found.")
        return image

    def _shareable_image(self, principal: Principal, image_id: str) -> Image:
        if not principal.is_admin and principal.tenant is None:
            raise Unauthenticated("Membership changes need an authenticated tenant.")
        image = self._live_image(principal, image_id)
        if principal.is_admin or policy.owns(principal, image):
            return image
        can_share = any(
            m.member_id == principal.owner and m.can_share for m in self._repo.members(image.id)
        )
        if not can_share:
            # The reference answers 404 here (Q5); we keep that: it reveals nothing new.
            raise NotFound(f"You may not share image {image_id}.")
        return image

    def _owned_shared_image(self, principal: Principal, image_id: str) -> Image:
        """v2's membership changes: the image must be visible (NotFound), the caller its owner
        or an admin (Forbidden: a member or a stranger that sees it), and it shared."""
        image = self._live_image(principal, image_id)
        if not policy.can_modify(principal, image):
            raise Forbidden(f"You are not permitted to change the members of image {image_id}.")
        _require_shared(image)
        return image


def _require_shared(image: Image) -> None:
    if image.visibility is not Visibility.SHARED:
        raise Forbidden(NOT_SHARED)
