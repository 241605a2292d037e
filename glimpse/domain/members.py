"""The membership service: who an image is shared with, and who may change that.

A membership has a status (pending, accepted, rejected) and, for v1, ``can_share``. Members
see the image while it is shared, whatever their status; lists show it to accepted ones.
"""

from __future__ import annotations

from glimpse.domain import policy
from glimpse.domain.limits import Limits
from glimpse.domain.model import Image, Member, MemberStatus, Principal
from glimpse.domain.ports import ImageRepository
from glimpse.domain.validation import check_member_id
from glimpse.errors import NotFound, Unauthenticated


class MemberService:
    def __init__(self, repo: ImageRepository, limits: Limits) -> None:
        self._repo = repo
        self._check_quota = limits.check_members

    def list_members(self, principal: Principal, image_id: str) -> list[Member]:
        image = self._live_image(principal, image_id)
        members = self._repo.members(image.id)
        if principal.is_admin or policy.owns(principal, image):
            return members
        return [m for m in members if m.member_id == principal.owner]

    def get(self, principal: Principal, image_id: str, member_id: str) -> Member:
        for member in self.list_members(principal, image_id):
            if member.member_id == member_id:
                return member
        raise NotFound("Membership could not be found.")

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

    def _live_image(self, principal: Principal, image_id: str) -> Image:
        image = self._repo.get(image_id) if len(image_id) <= 36 else None
        if image is None:
            raise NotFound(f"Image {image_id} not found.")
        if image.deleted and (principal.is_admin or policy.owns(principal, image)):
            raise NotFound(f"Image with identifier {image_id} has been deleted.")
        if not policy.can_see(
            principal, image, lambda: self._repo.is_member(image_id, principal.owner or "")
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
