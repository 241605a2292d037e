"""The membership service (spec §11): who an image is shared with, and who may change that."""

from __future__ import annotations

from glimpse.domain import policy
from glimpse.domain.model import Image, Member, Principal
from glimpse.domain.ports import ImageRepository
from glimpse.domain.validation import MAX_KEY_LENGTH
from glimpse.errors import Invalid, NotFound, OverLimit, Unauthenticated


class MemberService:
    def __init__(self, repo: ImageRepository, member_quota: int) -> None:
        self._repo = repo
        self._quota = member_quota

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
        self, principal: Principal, image_id: str, member_id: str, can_share: bool | None
    ) -> None:
        image = self._shareable_image(principal, image_id)
        _check_member_id(member_id)
        existing = {m.member_id for m in self._repo.members(image.id)}
        # Unlike the reference (Q18), re-adding an existing member does not count twice.
        count = len(existing | {member_id})
        self._check_quota(count)
        # Checked again under the image's lock: concurrent adds may not pass the quota together.
        self._repo.set_member(image.id, member_id, can_share, self._check_quota)

    def replace(
        self, principal: Principal, image_id: str, members: list[tuple[str, bool | None]]
    ) -> None:
        image = self._shareable_image(principal, image_id)
        for member_id, _ in members:
            _check_member_id(member_id)
        self._check_quota(len({m for m, _ in members}))
        self._repo.replace_members(image.id, members)

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

    def _check_quota(self, count: int) -> None:
        if 0 <= self._quota < count:
            raise OverLimit(
                f"The limit has been exceeded on the number of allowed image members for this "
                f"image. Attempted: {count}, Maximum: {self._quota}"
            )


def _check_member_id(member_id: str) -> None:
    if not member_id or len(member_id) > MAX_KEY_LENGTH:
        raise Invalid("Member id must be 1 to 255 characters long")
