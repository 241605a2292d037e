"""The image service: every image operation, with its rules, in one readable place. The data
path (receiving, copying, releasing data) is ``data.ImageData``."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from glimpse.domain import ids, lifecycle, quotas
from glimpse.domain.data import (
    EXTERNAL_STORE,
    Download,
    HashCheck,
    ImageData,
    RangeChooser,
    Upload,
    data_size,
)
from glimpse.domain.fields import BY_NAME, RESERVED_PROPERTY_PREFIX, Field, Kind, Setter
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.limits import Limits
from glimpse.domain.location_tasks import LocationTasks
from glimpse.domain.locations import LocationEdit, dropped_data
from glimpse.domain.model import (
    AddLocation,
    AddTag,
    Changes,
    Command,
    DataSource,
    Image,
    ImageInput,
    ListQuery,
    Location,
    Presence,
    Principal,
    RemoveLocation,
    RemoveOtherProperties,
    RemoveProperties,
    RemoveTag,
    ReplaceLocations,
    SetFields,
    SetProperties,
    SetTags,
    Status,
    Visibility,
    now,
)
from glimpse.domain.policy import DEFAULT_POLICY, ImageTarget, Policy, list_scope, new_image_target
from glimpse.domain.ports import ImageRepository
from glimpse.domain.protections import CallerAccess, Operation, PropertyRules
from glimpse.domain.validation import (
    require_formats,
    validate_fields,
    validate_properties,
    validate_property_values,
    validate_tags,
)
from glimpse.errors import Conflict, Forbidden, GlimpseError, Invalid, NotFound

__all__ = ["Download", "ImageService", "Upload"]

NO_SOURCE = DataSource()
# Statuses of an image whose data has not arrived (yet): queued, or on its way in.
_AWAITING_DATA = frozenset({Status.QUEUED, Status.SAVING, Status.UPLOADING, Status.IMPORTING})
NO_DATA_YET = "no_data_yet"  # the code of open_data's NotFound for such an image
# Statuses whose data is complete: facts about it (size, checksum) no longer change.
_DATA_FIXED = (Status.ACTIVE, Status.DEACTIVATED)
# Statuses in which the formats may still change (v2): no data yet, or data being imported.
_FORMATS_OPEN = (Status.QUEUED, Status.IMPORTING)


class ImageService:
    def __init__(
        self, repo: ImageRepository, data: ImageData, limits: Limits, *,
        admins_read_deactivated: bool = False,
        hide_deleted: bool = False,
        protections: PropertyRules | None = None,
        policy: Policy = DEFAULT_POLICY,
        location_tasks: LocationTasks | None = None,
    ) -> None:
        """Where the two APIs' rules differ, each gets a service with its own answer:

        ``admins_read_deactivated``: whether admins may download a deactivated image. v2
        lets them (spec v2-api.md §2.6); v1 refuses everyone, as its reference did (v1-api.md
        §8.3).

        ``hide_deleted``: whether a deleted image is unknown to everyone, admins included (v2:
        GET, /file, PATCH and DELETE are 404 after a delete, §2.5, and the clients check
        their deletes so); v1 shows admins a deleted image's metadata.

        ``protections``: the operator's property protections (None: every property is
        everyone's who may change the image). Every image a method returns is shown without
        the properties its caller may not read.

        ``policy``: the rules every operation is authorized by (glimpse.domain.policy).

        ``location_tasks``: where the locations API records a ``location_import`` task per
        location added (v2; None: none recorded)."""
        self._repo = repo
        self.data = data
        self._limits = limits
        self._admins_read_deactivated = admins_read_deactivated
        self._hide_deleted = hide_deleted
        self._protections = protections
        self.policy = policy
        self._location_tasks = location_tasks

    # -- reading ---------------------------------------------------------------------------

    def get(self, principal: Principal, image_id: str) -> Image:
        """The image if the caller may see it; NotFound otherwise (never Forbidden). Any
        spelling of its UUID finds it (``ids``). Authorized by ``get_image``: an image the
        rule refuses does not exist for the caller (Glance's 404, not 403)."""
        return self._shown(principal, self._find(principal, image_id))

    def _find(self, principal: Principal, image_id: str) -> Image:
        """``get``, with every property: for the service's own decisions."""
        self.policy.require_scope(principal)
        image = ids.find(self._repo, image_id)
        if image is None or (image.deleted and self._hide_deleted) or not self.policy.may_see(
            principal, image, lambda: self._repo.is_member(image.id, principal.owner or "")
        ):
            raise NotFound(f"Image {image_id} not found.")
        return image

    def _enforce(self, rule: str, principal: Principal, image: Image,
                 message: str | None = None, code: str | None = None) -> None:
        """A rule about an image the caller sees (``get``): 403 when refused."""
        self.policy.enforce(rule, principal, ImageTarget(image, principal.owner), message,
                            code=code)

    def list_images(self, principal: Principal, query: ListQuery,
                    marker_id: str | None) -> list[Image]:
        # The SQL scope is the visibility gate; get_image is asked per row only while the
        # operator overrides it (Policy.visible).
        self.policy.enforce("get_images", principal, {"project_id": principal.owner})
        query.scope = list_scope(principal, query.scope)
        query.owner = principal.owner
        if marker_id is not None:
            try:
                query.marker = self._find(principal, marker_id)
            except NotFound as exc:
                raise Invalid("Invalid marker. Image could not be found.") from exc
        images = self.policy.visible(principal, self._repo.list_images(query))
        access = self._access(principal)
        if access is None:
            return images
        if any(not access.may(name, Operation.READ) for name in query.properties):
            # A property the caller may not read is one no image has, for this caller: a
            # filter on it must not tell which images hold which value.
            return []
        return [access.shown(image) for image in images]

    def open_data(self, principal: Principal, image_id: str, offset: int = 0,
                  length: int | None = None, choose: RangeChooser | None = None) -> Download:
        """The image's data, ``length`` bytes from ``offset`` (to the end when None), read
        from its store at that offset.

        ``choose``, when given, picks the (offset, length) instead once the image is known
        to be readable by the caller, from the size of its data; it may raise (an API's
        range parser raises RangeNotSatisfiable). It is not called when that size is unknown
        (an external location whose remote did not say): the whole data is read.
        """
        image = self._find(principal, image_id)
        self._enforce("download_image", principal, image)
        if image.status is Status.DEACTIVATED and not (
                principal.is_admin and self._admins_read_deactivated):
            raise Forbidden("The requested image has been deactivated. Image data download is "
                            "forbidden.")
        if image.status not in _DATA_FIXED:
            # Coded: v2 answers an image whose data has not arrived yet with an empty 204.
            code = NO_DATA_YET if image.status in _AWAITING_DATA else None
            raise NotFound(f"Image {image_id} is not active", code=code)
        if choose is not None and (size := data_size(image)) is not None:
            offset, length = choose(size)
        download = self.data.open(image, offset, length)
        if self.data.events.on:
            events, promised = self.data.events, download.length
            download = dataclasses.replace(download, sent=lambda count: events.sent(
                image, principal, count, promised))
        shown = self._shown(principal, download.image)
        return download if shown is download.image else dataclasses.replace(download, image=shown)

    def quota_usage(self, principal: Principal) -> dict[str, dict[str, int]] | None:
        """The caller's project's limits and usage of every quota resource, in Glance's units
        (``quotas.report``); None without unified limits."""
        found = self.data.quota_report(principal.owner)
        return None if found is None else quotas.report(*found)

    # -- creating and changing ---------------------------------------------------------------

    def create(
        self, principal: Principal, data: ImageInput, upload: Upload | None,
        on_failure: FailureRule,
    ) -> Image:
        source = data.source
        fields = self._client_fields(principal, data.fields, None)
        owner = fields.get("owner", principal.owner)
        target = new_image_target(owner, fields.get("visibility", Visibility.SHARED))
        self.policy.enforce("add_image", principal, target,
                            None if owner == principal.owner else
                            f"You are not permitted to create images owned by '{owner}'.")
        self._check_input(principal, fields, source, upload, target)
        validate_properties(data.properties)
        validate_property_values(data.properties)
        access = self._access(principal)
        if access is not None:
            access.check_create(data.properties)
        validate_tags(data.tags)
        if source.url is not None or upload is not None:
            require_formats(fields.get("disk_format"), fields.get("container_format"))
        tags = list(dict.fromkeys(data.tags))
        self._limits.check_counts(len(data.properties), len(tags))
        declared = fields.get("size")
        remote_size = self._check_external(source, declared)
        store = self.data.writable_store(source.store, upload)
        fields.setdefault("owner", principal.owner)
        if declared is None and remote_size is not None:
            fields["size"] = remote_size
        empty = declared == 0 and upload is None and source.url is None
        stamp = now()
        image_id = fields.pop("id", None) or _new_id()
        given = data.fields.get("id")
        if isinstance(given, str) and given != image_id and ids.find(self._repo, given):
            # The id as written names an image stored before ids were made canonical: the same
            # Conflict as any reused id (repository.create finds those of canonical ids).
            raise Conflict(f"An image with identifier {given} already exists")
        # The owner's quotas: a create counts an image; data sent with it (v1) is an upload.
        admission = self.data.admission(fields["owner"], new_image=True, upload=False)
        # Created already claimed (saving, with its location recorded): nobody else can have
        # seen it queued, and a small upload is spared a transaction. Not when quotas apply:
        # the create admits the image, then the upload's claim reserves its bytes.
        claimed = upload is not None and not admission.bounds_uploads
        status = Status.SAVING if claimed else Status.ACTIVE if empty else Status.QUEUED
        if status is not Status.QUEUED:
            lifecycle.check_transition(Status.QUEUED, status)
        image = Image(
            id=image_id, status=status, properties=dict(data.properties), tags=tags,
            created_at=stamp, updated_at=stamp,
            locations=[self.data.claimed_location(image_id, store)] if claimed else [],
            failure_status=on_failure.status if claimed else None,
            **(self.data.claim_fields() if claimed else {}),
            **fields,
        )
        self._repo.create(image, admit=admission if admission.needed else None)
        self.data.events.image("image.create", image)
        if upload is not None:
            image = self.data.receive(image, upload.chunks, store, on_failure, claimed=claimed,
                                      length=upload.length, expected_hash=upload.expected_hash)
            return self._shown(principal, image)
        return self._shown(principal, self._attach(image, source, None, store, on_failure))

    def update(
        self,
        principal: Principal,
        image_id: str,
        commands: Sequence[Command],
        *,
        source: DataSource = NO_SOURCE,
        upload: Upload | None = None,
        on_failure: FailureRule,
    ) -> Image:
        image = self._find(principal, image_id)
        if image.deleted:
            raise Forbidden("Forbidden to update deleted image.")
        # v2's PUT /file is upload_image alone, and a PATCH of location operations only is
        # their rules alone (Glance asks modify_image per change of anything else).
        data_only = upload is not None and not commands
        locations_only = bool(commands) and all(
            isinstance(c, AddLocation | RemoveLocation | ReplaceLocations) for c in commands)
        if not (data_only or locations_only):
            self._enforce("modify_image", principal, image,
                          "You are not permitted to modify this image.")
        target = ImageTarget(image, principal.owner)
        changes, located = self._fold(principal, image, commands)
        fields = changes.fields
        self._check_input(principal, fields, source, upload, target)
        if located.fields.get("status") is Status.ACTIVE:
            # A location activates a queued image: its data needs formats, as an upload's.
            require_formats(fields.get("disk_format", image.disk_format),
                            fields.get("container_format", image.container_format))
        fields.update(located.fields)
        if source.url is not None and image.status is not Status.QUEUED:
            raise Invalid("A location can only be set on a queued image.",
                          code="location_not_queued")
        if upload is not None and image.status is not Status.QUEUED:
            raise Conflict("Cannot upload to an unqueued image")
        if upload is not None or source.url is not None:
            require_formats(
                fields.get("disk_format", image.disk_format),
                fields.get("container_format", image.container_format),
            )
        remote_size = self._check_external(source, fields.get("size"))
        if remote_size is not None and "size" not in fields and not image.size:
            fields["size"] = remote_size
        store = self.data.writable_store(source.store, upload)
        if upload is not None and not commands:
            # Data alone (v2's PUT /file): the claim that receiving starts with is the only
            # write needed before the data; it checks the image is still queued.
            return self._shown(principal, self.data.receive(
                image, upload.chunks, store, on_failure, length=upload.length,
                expected_hash=upload.expected_hash))
        changes.fields["updated_at"] = now()
        # Quotas are checked here on the read for a quick answer, and again by the repository
        # on the stored result, which a concurrent update may have grown meanwhile.
        updated = self._repo.update(
            image.id, changes, expected_status=image.status,
            check_counts=self._limits.check_counts,
        )
        if updated is None:
            raise Conflict("The image changed while it was being updated; try again.")
        self.data.events.image("image.update", updated)
        self.data.events.tags(updated, image.tags)
        if changes.locations is not None:
            # Committed: glimpse's own copies that no location names any more go (a store that
            # fails only logs; StoreAudit finds the object).
            for location in dropped_data(image.locations, changes.locations):
                self.data.release(image.id, location)
        return self._shown(principal, self._attach(updated, source, upload, store, on_failure))

    def delete(self, principal: Principal, image_id: str) -> None:
        raw = ids.find(self._repo, image_id)
        # A pending_delete image is deleted for reads, but its owner is told why it can't be
        # deleted again rather than that it doesn't exist.
        if raw is not None and raw.status is Status.PENDING_DELETE and self.policy.allowed(
            "delete_image", principal, ImageTarget(raw, principal.owner)
        ):
            raise Forbidden(f"Forbidden to delete a {raw.status} image.")
        image = self._find(principal, image_id)
        if image.status in (Status.DELETED, Status.PENDING_DELETE):
            raise NotFound(f"Image {image_id} not found.")
        self._enforce("delete_image", principal, image,
                      "You are not permitted to delete this image.")
        if image.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        self.data.check_not_in_use(image)
        for _ in range(5):
            has_data = any(loc.store != EXTERNAL_STORE for loc in image.locations)
            target = (
                Status.PENDING_DELETE
                if self._limits.delayed_delete and has_data and image.status is not Status.SAVING
                else Status.DELETED
            )
            lifecycle.check_transition(image.status, target)
            if gone := self._repo.mark_deleted(image.id, target, now(),
                                               expected_status=image.status):
                # The image as it was, in its new status: the stored one has lost its
                # properties and tags, which Glance's payload still shows.
                self.data.events.deleted(dataclasses.replace(
                    image, status=gone.status, deleted=True, deleted_at=gone.deleted_at,
                    updated_at=gone.updated_at))
                self.data.uncache(image.id)
                if target is Status.DELETED:
                    self.data.release_all(image)
                return
            # The status moved under us (an upload finished); decide again on the new state.
            image = self._find(principal, image_id)
            if image.deleted:
                raise NotFound(f"Image {image_id} not found.")
        raise Conflict("The image kept changing while it was being deleted; try again.")

    # -- actions ------------------------------------------------------------------------------

    def deactivate(self, principal: Principal, image_id: str) -> Image:
        """active -> deactivated: its data can no longer be downloaded (but by admins, where
        the API lets them); its metadata stays editable. Idempotent."""
        return self._toggle(principal, image_id, Status.ACTIVE, Status.DEACTIVATED, "deactivate")

    def reactivate(self, principal: Principal, image_id: str) -> Image:
        """deactivated -> active. Idempotent."""
        return self._toggle(principal, image_id, Status.DEACTIVATED, Status.ACTIVE, "reactivate")

    def _toggle(
        self, principal: Principal, image_id: str, source: Status, target: Status, verb: str
    ) -> Image:
        image = self._find(principal, image_id)
        for _ in range(5):
            if image.deleted:
                raise NotFound(f"Image {image_id} not found.")
            self._enforce(verb, principal, image, f"You are not permitted to {verb} this image.")
            if image.status is target:
                # Already there: nothing is written, updated_at included.
                return self._shown(principal, image)
            if image.status is not source:
                raise Forbidden(f"Not allowed to {verb} image in status '{image.status}'")
            lifecycle.check_transition(source, target)
            moved = self._repo.update(
                image.id, Changes(fields={"status": target, "updated_at": now()}),
                expected_status=source,
            )
            if moved is not None:
                if target is Status.DEACTIVATED:
                    self.data.uncache(image.id)
                self.data.events.image("image.update", moved)
                return self._shown(principal, moved)
            # The status moved under us (another toggle, a delete): decide again.
            image = self._find(principal, image_id)
        raise Conflict(f"The image kept changing while trying to {verb} it; try again.")

    # -- locations (v2's locations API) -------------------------------------------------------

    def add_location(self, principal: Principal, image_id: str, url: str,
                     expected: HashCheck | None) -> Image:
        """Point a queued image at data behind an external URL, checked by the same network
        rules as every external source; the data is verified in the background (see
        ImageData.import_location). Service callers (nova, cinder) and the owner may."""
        image = self._find(principal, image_id)
        self._enforce("add_image_location", principal, image,
                      "You are not permitted to add a location to this image.")
        if image.status is not Status.QUEUED:
            raise Conflict("A location can only be added to a queued image.")
        require_formats(image.disk_format, image.container_format)
        self.data.check_external(url, None)
        if self._location_tasks is None:
            return self._shown(principal, self.data.import_location(image, url, expected))
        # Recorded before the claim: a client that waits on the image's tasks once answered
        # finds it. A claim that fails ends it at once.
        task = self._location_tasks.start(principal, image, url, expected)
        ended = self._location_tasks.ender(task)
        try:
            claimed = self.data.import_location(image, url, expected, ended)
        except GlimpseError as exc:
            ended(exc.message)
            raise
        return self._shown(principal, claimed)

    def locations(self, principal: Principal, image_id: str) -> list[Location]:
        """Where the image's data is: for service callers and admins only."""
        image = self._find(principal, image_id)
        self._enforce("fetch_image_location", principal, image,
                      "Only services and administrators may read image locations.")
        return list(image.locations)

    # -- helpers ------------------------------------------------------------------------------

    def _access(self, principal: Principal) -> CallerAccess | None:
        """The caller's access to properties; None when no protections are configured."""
        return None if self._protections is None else self._protections.for_caller(principal)

    def _shown(self, principal: Principal, image: Image) -> Image:
        access = self._access(principal)
        return image if access is None else access.shown(image)

    def _client_fields(
        self, principal: Principal, values: dict[str, Any], image: Image | None
    ) -> dict[str, Any]:
        """The fields a client may set, as the field table says: admin-only ones from others
        are ignored; server-managed ones and the id of an existing image may be resent
        unchanged only; declared facts about the data are fixed once it is complete (but
        for admins)."""
        out: dict[str, Any] = {}
        for name, value in values.items():
            spec = BY_NAME.get(name)
            if spec is None:
                raise Invalid(f"Unknown image attribute '{name}'")
            value = _normalized(spec, value)
            setter = spec.setter
            if setter is Setter.ADMIN and not principal.is_admin:
                continue
            if setter is Setter.SERVER or (setter is Setter.CREATOR and image is not None):
                current = getattr(image, name) if image is not None else None
                if image is None or value != _normalized(spec, current):
                    raise Forbidden(f"Forbidden to modify '{name}' of image.")
                continue
            if (setter is Setter.DECLARED and image is not None and not principal.is_admin
                    and image.status in _DATA_FIXED and value != getattr(image, name)):
                raise Forbidden(f"Forbidden to modify '{name}' of {image.status} image.")
            out[name] = value
        return out

    def _fold(self, principal: Principal, image: Image,
              commands: Sequence[Command]) -> tuple[Changes, LocationEdit]:
        """The commands, in order, as one set of changes; checked against the image as read
        (missing properties and tags, quotas), and again by the repository on the result.
        The location commands' edit comes apart: its fields are the server's (status, size,
        hashes), set after the client's are checked."""
        changes = Changes()
        located = LocationEdit(image, self._limits, self.data.check_external)
        properties = dict(image.properties)
        access = self._access(principal)
        # Properties that exist but that the caller may not read: absent as far as it can
        # tell (not there to replace or remove, not removed by v1's purge), and never set.
        hidden = frozenset() if access is None else access.hidden(properties)
        tags = list(image.tags)
        for command in commands:
            if isinstance(command, SetFields):
                values = self._client_fields(principal, dict(command.values), image)
                if command.formats_need_no_data:
                    _check_formats_open(image, values)
                changes.fields.update(values)
            elif isinstance(command, SetProperties):
                validate_properties(command.values)
                validate_property_values(command.values)
                _check_presence(command, properties, hidden)
                if access is not None:
                    access.check_set(command.values, properties, hidden)
                properties.update(command.values)
                changes.set_properties.update(command.values)
                changes.remove_properties -= set(command.values)
            elif isinstance(command, RemoveProperties):
                validate_properties(command.names)
                for name in command.names:
                    if name not in properties or name in hidden:
                        if not command.missing_ok:
                            raise Conflict(f"Property {name} does not exist.")
                        if access is not None:
                            # Nothing the caller can see to remove: nothing is (a hidden
                            # property stays, and so does one added meanwhile).
                            continue
                    elif access is not None:
                        access.require(name, Operation.DELETE)
                    properties.pop(name, None)
                    changes.set_properties.pop(name, None)
                    changes.remove_properties.add(name)
            elif isinstance(command, RemoveOtherProperties) and access is not None:
                # Under protections, the properties the caller can see and did not resend are
                # removed by name, each only if the caller may delete it; those it may not
                # read stay, as in Glance v1 (and so does one added meanwhile).
                keep = command.keep | set(changes.set_properties)
                for name in [k for k in properties if k not in keep and k not in hidden
                             and not k.startswith(RESERVED_PROPERTY_PREFIX)]:
                    access.require(name, Operation.DELETE)
                    del properties[name]
                    changes.remove_properties.add(name)
            elif isinstance(command, RemoveOtherProperties):
                # The service's own properties are not the client's to resend: they stay.
                keep = command.keep | set(changes.set_properties)
                properties = {k: v for k, v in properties.items()
                              if k in keep or k.startswith(RESERVED_PROPERTY_PREFIX)}
                changes.keep_properties = frozenset(keep)
                changes.keep_namespace = RESERVED_PROPERTY_PREFIX
            elif isinstance(command, AddLocation | RemoveLocation | ReplaceLocations):
                self._enforce("delete_image_location" if isinstance(command, RemoveLocation)
                              else "set_image_location", principal, image)
                located.apply(command)
            else:
                tags = _fold_tag_command(command, tags, changes)
        self._limits.check_counts(len(properties), len(tags))
        if located.changed:
            changes.locations = located.locations
            changes.locations_before = list(image.locations)
        return changes, located

    def _check_input(
        self, principal: Principal, fields: dict[str, Any], source: DataSource,
        upload: Upload | None, target: Mapping[str, object],
    ) -> None:
        """The values and data sources asked for, and the rules they need (Glance's, with
        v1's: copy_from, upload_image with data or a copy, set_image_location for
        x-image-meta-location)."""
        validate_fields(fields, self._limits.disk_formats, self._limits.container_formats)
        cap = self._limits.image_size_cap
        declared = fields.get("size")
        if (declared is not None and declared > cap) or (
            upload is not None and upload.length is not None and upload.length > cap
        ):
            # Known before any byte arrives: v1 answers 400; the code lets v2 answer 413.
            raise Invalid(f"Denying attempt to upload image larger than {cap} bytes.",
                          code="declared_over_cap")
        visibility = fields.get("visibility")
        if visibility == Visibility.PUBLIC:
            self.policy.enforce("publicize_image", principal, target,
                                "Only administrators may make images public.", code="publicize")
        elif visibility == Visibility.COMMUNITY:
            self.policy.enforce("communitize_image", principal, target,
                                "You are not permitted to make images community.")
        count = (source.location is not None) + (source.copy_from is not None) + (
            upload is not None)
        if count > 1:
            raise Invalid("Only one source of image data may be given.",
                          code="multiple_sources")
        if source.copy_from is not None:
            self.policy.enforce("copy_from", principal, target)
        if upload is not None or source.copy_from is not None:
            self.policy.enforce("upload_image", principal, target)
        if source.location is not None:
            self.policy.enforce("set_image_location", principal, target)

    def _check_external(self, source: DataSource, declared: int | None) -> int | None:
        url = source.url
        return None if url is None else self.data.check_external(url, declared)

    def _attach(
        self, image: Image, source: DataSource, upload: Upload | None, store: str,
        on_failure: FailureRule,
    ) -> Image:
        """Attach the request's data source, if any, to a freshly written image."""
        if upload is not None:
            return self.data.receive(image, upload.chunks, store, on_failure,
                                     length=upload.length, expected_hash=upload.expected_hash)
        if source.location is not None:
            return self.data.point_at(image, source.location)
        if source.copy_from is not None:
            self.data.copy_in_background(image.id, source.copy_from, store, on_failure)
        return image


def _fold_tag_command(command: AddTag | RemoveTag | SetTags, tags: list[str],
                      changes: Changes) -> list[str]:
    """One tag command folded into ``changes``; returns the tag list it leaves."""
    replacing = changes.replace_tags
    if isinstance(command, SetTags):
        validate_tags(command.tags)
        tags = list(dict.fromkeys(command.tags))
        # The stored list is replaced as a whole, whatever a concurrent writer added.
        changes.replace_tags = list(tags)
        changes.add_tags.clear()
        changes.remove_tags.clear()
    elif isinstance(command, AddTag):
        validate_tags([command.tag])
        if command.tag not in tags:
            tags.append(command.tag)
            if replacing is not None:
                replacing.append(command.tag)
            else:
                changes.remove_tags.discard(command.tag)
                changes.add_tags.append(command.tag)
    elif command.tag not in tags:
        if not command.missing_ok:
            raise NotFound(f"Tag {command.tag} not found.")
    else:
        tags.remove(command.tag)
        if replacing is not None:
            replacing.remove(command.tag)
        elif command.tag in changes.add_tags:
            changes.add_tags.remove(command.tag)
        else:
            changes.remove_tags.add(command.tag)
    return tags


def _check_presence(command: SetProperties, properties: dict[str, str | None],
                    hidden: frozenset[str]) -> None:
    """``hidden`` (properties the caller may not read) count as absent."""
    if command.presence is Presence.PRESENT:
        for name in command.values:
            if name not in properties or name in hidden:
                raise Conflict(f"Property {name} does not exist.")
    elif command.presence is Presence.ABSENT:
        for name in command.values:
            if name in properties and name not in hidden:
                raise Conflict(f"Property {name} already present.")


def _check_formats_open(image: Image, values: dict[str, Any]) -> None:
    """Formats describe the data: once data is on its way or complete, they stay."""
    if image.status in _FORMATS_OPEN:
        return
    for name in ("disk_format", "container_format"):
        if name in values and values[name] != getattr(image, name):
            raise Forbidden(f"Attribute {name} can be only replaced for a queued image.",
                            code="formats_fixed")


def _normalized(spec: Field, value: Any) -> Any:
    """A value as its column holds it, by the field table: a null count is 0 (v1 sends an
    empty header for it), a visibility the enum, a UUID its canonical spelling. Values of the
    wrong type are left for validation to refuse."""
    if value is None and spec.kind is Kind.INTEGER and not spec.nullable:
        return 0
    if spec.kind is Kind.VISIBILITY and value in tuple(Visibility):
        return Visibility(value)
    if spec.kind is Kind.UUID and isinstance(value, str):
        return ids.canonical(value)
    return value


def _new_id() -> str:
    return str(uuid.uuid4())

