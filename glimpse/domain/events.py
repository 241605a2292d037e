"""Glance's notifications: which event each operation reports, with Glance's payloads.

The services call ``Events`` once per event, after the change is committed; the Notifier port
(glimpse.domain.ports) carries them out of the process. Payloads are Glance's, field for field
(glance/notifier.py), so consumers written for Glance (ceilometer) read them unchanged; they
never hold an image's locations, which may carry credentials.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from glimpse.domain.model import Image, Member, Principal, now
from glimpse.domain.ports import Notifier
from glimpse.domain.tasks import Task

# Every event type glimpse sends (docs/notifications.md has a sample payload of each). Glance's
# task.* events have no counterpart: glimpse has no tasks API (yet).
EVENT_TYPES = (
    "image.create", "image.prepare", "image.upload", "image.activate", "image.update",
    "image.delete", "image.send", "image.member.create", "image.member.update",
    "image.member.delete", "image.tag.create", "image.tag.delete",
    "task.create", "task.run", "task.processing", "task.success", "task.failure",
)


class NullNotifier:
    """Notifications off: nothing is built, nothing is sent."""

    def notify(self, event_type: str, payload: dict[str, Any] | str,
               error: bool = False) -> None:
        pass


NO_NOTIFIER: Notifier = NullNotifier()


def isotime(when: dt.datetime | None) -> str | None:
    """Glance's timestamps in notifications (timeutils.isotime): UTC, seconds, a Z."""
    if when is None:
        return None
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC).replace(tzinfo=None)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_payload(image: Image) -> dict[str, Any]:
    """Glance's format_image_notification: no locations (they may hold credentials)."""
    visibility = str(image.visibility)
    return {
        "id": image.id,
        "name": image.name,
        "status": str(image.status),
        "created_at": isotime(image.created_at),
        "updated_at": isotime(image.updated_at),
        "min_disk": image.min_disk,
        "min_ram": image.min_ram,
        "protected": image.protected,
        "checksum": image.checksum,
        "owner": image.owner,
        "disk_format": image.disk_format,
        "container_format": image.container_format,
        "size": image.size,
        "virtual_size": image.virtual_size,
        "is_public": visibility == "public",
        "visibility": visibility,
        "properties": dict(image.properties),
        "tags": list(image.tags),
        "deleted": False,
        "deleted_at": None,
    }


def member_payload(member: Member) -> dict[str, Any]:
    """Glance's format_image_member_notification."""
    return {
        "image_id": member.image_id,
        "member_id": member.member_id,
        "status": str(member.status),
        "created_at": isotime(member.created_at),
        "updated_at": isotime(member.updated_at),
        "deleted": False,
        "deleted_at": None,
    }


def task_payload(task: Task) -> dict[str, Any]:
    """Glance's format_task_notification: never the input (it may hold a URL with
    credentials) nor the result or message."""
    return {
        "id": task.id,
        "type": str(task.type),
        "status": str(task.status),
        "result": None,
        "owner": task.owner,
        "message": None,
        "expires_at": isotime(task.expires_at),
        "created_at": isotime(task.created_at),
        "updated_at": isotime(task.updated_at),
        "deleted": False,
        "deleted_at": None,
    }


def _import_lists(image: Image) -> dict[str, Any]:
    """The stores an import is writing to and those that failed, as lists (Glance adds them
    to image.prepare and image.upload from the image's os_glance_* properties)."""
    return {key: [s for s in (image.properties.get(key) or "").split(",") if s]
            for key in ("os_glance_importing_to_stores", "os_glance_failed_import")}


class Events:
    """The domain's side of notifications: one method per kind of event, each building its
    payload only when notifications are on."""

    def __init__(self, notifier: Notifier = NO_NOTIFIER) -> None:
        self._notifier = notifier
        self.on = not isinstance(notifier, NullNotifier)

    def image(self, event_type: str, image: Image) -> None:
        """image.create, image.update, image.activate."""
        if self.on:
            self._notifier.notify(event_type, image_payload(image))

    def prepare(self, image: Image) -> None:
        """Data starts streaming into a store (Glance adds v2 import's store lists)."""
        if self.on:
            self._notifier.notify("image.prepare", {**image_payload(image),
                                                    **_import_lists(image)})

    def uploaded(self, image: Image, activated: bool) -> None:
        """The data is stored: image.upload, then image.activate when it made the image
        active (Glance's order)."""
        if self.on:
            payload = image_payload(image)
            self._notifier.notify("image.upload", {**payload, **_import_lists(image)})
            if activated:
                self._notifier.notify("image.activate", payload)

    def upload_failed(self, image_id: str, reason: str) -> None:
        """Glance's failed image.upload: an ERROR whose payload is a message string."""
        if self.on:
            self._notifier.notify(
                "image.upload",
                f"Failed to upload image data for image {image_id}: {reason}", error=True)

    def deleted(self, image: Image) -> None:
        if self.on:
            payload = image_payload(image)
            payload.update(deleted=True, deleted_at=isotime(image.deleted_at or now()))
            self._notifier.notify("image.delete", payload)

    def tags(self, image: Image, before: list[str]) -> None:
        """image.tag.create / image.tag.delete, one per tag added or removed (after the
        image.update of the same change): Glance reports tag changes as image.update only;
        these say which tag, for consumers that follow tags. The payload is the image's,
        with the ``tag``."""
        if not self.on:
            return
        old, new = set(before), set(image.tags)
        for tag in [t for t in image.tags if t not in old]:
            self._notifier.notify("image.tag.create", {**image_payload(image), "tag": tag})
        for tag in [t for t in before if t not in new]:
            self._notifier.notify("image.tag.delete", {**image_payload(image), "tag": tag})

    def member(self, event_type: str, member: Member) -> None:
        if self.on:
            payload = member_payload(member)
            if event_type == "image.member.delete":
                payload.update(deleted=True, deleted_at=isotime(now()))
            self._notifier.notify(event_type, payload)

    def sent(self, image: Image, principal: Principal, bytes_sent: int,
             expected: int | None) -> None:
        """image.send, once the data has gone out: an ERROR when fewer bytes left than the
        download promised (Glance compares with what it meant to send)."""
        if self.on:
            self._notifier.notify("image.send", {
                "bytes_sent": bytes_sent,
                "image_id": image.id,
                "owner_id": image.owner,
                "receiver_tenant_id": principal.tenant,
                "receiver_user_id": principal.user,
            }, error=expected is not None and bytes_sent != expected)

    def task(self, event_type: str, task: Task) -> None:
        """task.create, task.run, task.processing, task.success, task.failure. As Glance,
        the payload is the task as it was before the event's change (task.processing says
        pending, task.success processing)."""
        if self.on:
            self._notifier.notify(event_type, task_payload(task))

__all__ = ["EVENT_TYPES", "NO_NOTIFIER", "Events", "NullNotifier"]
