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

from glimpse.domain import ids
from glimpse.domain.limits import Limits
from glimpse.domain.model import Image, Member, MemberStatus, Principal, Visibility
from glimpse.domain.policy import DEFAULT_POLICY, ImageTarget, Policy, owns
from glimpse.domain.ports import ImageRepository
from glimpse.domain.validation import check_member_id
from glimpse.errors import Conflict, Forbidden, Invalid, NotFound, Unauthenticated

NOT_SHARED = "Only shared images have members."


class MemberService:
    def __init__(self, repo: ImageRepository, limits: Limits,
                 policy: Policy = DEFAULT_POLICY) -> None:
        self._repo = repo
        self._check_quota = limits.check_members
        self._policy = policy

    def list_members(
        self, principal: Principal, image_id: str, shared_only: bool = False
    ) -> list[Member]:
        """Every membership for the owner and admins, a member's own to the member, none to
        others. ``shared_only`` (v2): Forbidden unless the image is shared."""
        return self._members(principal, image_id, shared_only, "get_members")

    def _members(self, principal: Principal, image_id: str, shared_only: bool,
                 rule: str) -> list[Member]:
        image = self._live_image(principal, image_id)
        self._enforce(rule, principal, image)
        if shared_only:
            _require_shared(image)
        return self._shown(principal, image)

    def get(
        self, principal: Principal, image_id: str, member_id: str, shared_only: bool = False
    ) -> Member:
        """One membership, to whoever list_members shows it; NotFound to others."""
        for member in self._members(principal, image_id, shared_only, "get_member"):
            if member.member_id == member_id:
                return member
        raise NotFound("Membership could not be found.")

    # -- v2 -----------------------------------------------------------------------------------

    def invite(self, principal: Principal, image_id: str, member_id: str) -> Member:
        """A new membership, pending: by the owner or an admin, of a shared image. A member
        removed and invited again starts pending again."""
        check_member_id(member_id)
        image = self._owned_shared_image(principal, image_id, "add_member")
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
        only_member = "Only the member itself may change the status of a membership."
        # modify_member's target names the caller as the member (Glance's member_id) only on
        # an image shared with it: the owner may not answer for its members.
        self._enforce("modify_member", principal, image, only_member)
        if not principal.is_admin and member_id != principal.owner:
            raise Forbidden(only_member)
        member = self._repo.set_member_status(image.id, member_id, MemberStatus(status))
        if member is None:  # removed meanwhile
            raise NotFound("Membership could not be found.")
        return member

    def uninvite(self, principal: Principal, image_id: str, member_id: str) -> None:
        """Remove a membership: the owner or an admin, of a shared image."""
        image = self._owned_shared_image(principal, image_id, "delete_member")
        if not self._repo.remove_member(image.id, member_id):
            raise NotFound("Membership could not be found.")

    # -- v1 -----------------------------------------------------------------------------------

    def add(
        self, principal: Principal, image_id: str, member_id: str, can_share: bool | None,
        status: MemberStatus,
    ) -> None:
        """Add the membership with ``status`` (an existing one keeps its status)."""
        image = self._shareable_image(principal, image_id, "add_member")
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
        image = self._shareable_image(principal, image_id, "add_member")
        for member_id, _ in members:
            check_member_id(member_id)
        self._check_quota(len({m for m, _ in members}))
        self._repo.replace_members(image.id, members, status)

    def remove(self, principal: Principal, image_id: str, member_id: str) -> None:
        image = self._shareable_image(principal, image_id, "delete_member")
        if not self._repo.remove_member(image.id, member_id):
            raise NotFound("Membership could not be found.")

    def shared_images(self, principal: Principal, member_id: str) -> list[Member]:
        """v1's images shared with ``member_id``: a list of images (get_images)."""
        self._policy.enforce("get_images", principal, {"project_id": principal.owner})
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
        if principal.is_admin or owns(principal, image):
            return members
        return [m for m in members if m.member_id == principal.owner]

    def _enforce(self, rule: str, principal: Principal, image: Image,
                 message: str | None = None) -> None:
        self._policy.enforce(rule, principal, ImageTarget(image, principal.owner), message)

    def _live_image(self, principal: Principal, image_id: str) -> Image:
        """The image, if the caller may see it (get_image); NotFound otherwise."""
        self._policy.require_scope(principal)
        image = ids.find(self._repo, image_id)
        if image is None:
            raise NotFound(f"Image {image_id} not found.")
        if image.deleted and (principal.is_admin or owns(principal, image)):
            raise NotFound(f"Image with identifier {image_id} has been deleted.")
        if not self._policy.may_see(
            principal, image, lambda: self._repo.is_member(image.id, principal.owner or "")
        ):
            raise NotFound(f"Image {image_id} not found.")
        return image

    def _shareable_image(self, principal: Principal, image_id: str, rule: str) -> Image:
        """v1's membership changes (``rule``: add_member, delete_member). The owner's and
        admins' are the rule's (403 when it refuses); a member whose membership has
        can_share shares on for the owner: the rule is asked with the image's project taken
        as the sharer's (so a reader-only sharer, or an operator's stricter rule, still
        refuses). Anyone else: 404, as the reference (Q5)."""
        if not principal.is_admin and principal.tenant is None:
            raise Unauthenticated("Membership changes need an authenticated tenant.")
        image = self._live_image(principal, image_id)
        if principal.is_admin or owns(principal, image):
            self._enforce(rule, principal, image)
            return image
        can_share = any(
            m.member_id == principal.owner and m.can_share for m in self._repo.members(image.id)
        )
        if not can_share:
            # The reference answers 404 here (Q5); we keep that: it reveals nothing new.
            raise NotFound(f"You may not share image {image_id}.")
        self._policy.enforce(rule, principal, {
            "project_id": principal.owner, "owner": principal.owner, "image_id": image.id,
            "id": image.id, "member_id": principal.owner, "visibility": str(image.visibility)})
        return image

    def _owned_shared_image(self, principal: Principal, image_id: str, rule: str) -> Image:
        """v2's membership changes (``rule``): the image must be visible (NotFound), the
        rule must allow (Forbidden: by default the owner's members and admins), and the image
        must be shared."""
        image = self._live_image(principal, image_id)
        self._enforce(rule, principal, image,
                      f"You are not permitted to change the members of image {image_id}.")
        _require_shared(image)
        return image


def _require_shared(image: Image) -> None:
    if image.visibility is not Visibility.SHARED:
        raise Forbidden(NOT_SHARED)
