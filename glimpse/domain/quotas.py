"""Per-project quotas: where their limits come from, what counts against them, and the checks
that admit a new image or an upload.

Resources are Glance's (``glance/quota``), counted per owner project:

``image_size_total``       bytes held by the project's live images (a live image is one not
                           killed, deleted nor pending_delete), an upload in flight counting
                           what it has reserved
``image_stage_total``      bytes of staged data (glance-direct): images uploading (a stage in
                           flight counting what it has reserved) and importing, until
                           their import ends or fails
``image_count_total``      live images
``image_count_uploading``  images receiving data (saving, uploading, importing)

A ``LimitSource`` gives each project's limits: None means unlimited. Sizes are bytes here (the
Keystone source converts Glance's MiB; the static ``user_storage_quota`` is bytes already).

The checks run inside the transaction that claims the image, under a lock of the owner's
(``ImageRepository.create``/``update`` with ``admit``), on usage read under that lock with
the image itself counted: two concurrent requests are admitted one after the other, each
seeing what the other took. An upload reserves the bytes it may write (its declared length,
else all that remains), and that reservation becomes its stream's hard cap: stricter than
Glance, whose limits are soft.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Protocol

from glimpse.errors import OverLimit

IMAGE_SIZE_TOTAL = "image_size_total"
IMAGE_STAGE_TOTAL = "image_stage_total"
IMAGE_COUNT_TOTAL = "image_count_total"
IMAGE_COUNT_UPLOADING = "image_count_uploading"
RESOURCES = (IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL, IMAGE_COUNT_TOTAL, IMAGE_COUNT_UPLOADING)
SIZE_RESOURCES = frozenset({IMAGE_SIZE_TOTAL, IMAGE_STAGE_TOTAL})
MiB = 1 << 20

# Glance's LimitExceeded, which its API puts in a 413 (its %(body)s is oslo.limit's message).
_EXCEEDED = ("The request returned a 413 Request Entity Too Large. This generally means that "
             "rate limiting or a quota threshold was breached.\n\nThe response body:\n")

# Per resource: the limit; None = unlimited. Sizes in bytes.
ProjectLimits = Mapping[str, int | None]


class LimitSource(Protocol):
    def limits(self, project: str | None) -> ProjectLimits:
        """The project's limit of every resource in RESOURCES (None: unlimited; sizes in
        bytes). Unavailable when the source cannot tell (never a pass)."""
        ...

    @property
    def unified(self) -> bool:
        """Whether these are unified limits (Keystone's): refusals are worded as Glance words
        them, and ``/v2/info/usage`` reports them. False: Glance's ``user_storage_quota``."""
        ...


@dataclasses.dataclass(frozen=True)
class StaticLimits:
    """Today's settings: ``user_storage_quota`` (bytes, 0 = unlimited) is image_size_total;
    the rest is unlimited."""

    user_storage_quota: int = 0
    unified: bool = False

    def limits(self, project: str | None) -> ProjectLimits:
        size = self.user_storage_quota if self.user_storage_quota > 0 else None
        return {IMAGE_SIZE_TOTAL: size, IMAGE_STAGE_TOTAL: None, IMAGE_COUNT_TOTAL: None,
                IMAGE_COUNT_UPLOADING: None}


@dataclasses.dataclass(frozen=True)
class Usage:
    """What a project holds, read under its lock. ``size_total`` leaves the image being
    admitted out (its own bytes are what the check decides); the counts include it."""

    count_total: int = 0
    count_uploading: int = 0
    size_total: int = 0
    stage_total: int = 0

    def of(self, resource: str) -> int:
        return {IMAGE_SIZE_TOTAL: self.size_total, IMAGE_STAGE_TOTAL: self.stage_total,
                IMAGE_COUNT_TOTAL: self.count_total,
                IMAGE_COUNT_UPLOADING: self.count_uploading}[resource]


class Admission:
    """The check one request's claim must pass, called by the repository (possibly more than
    once: a transaction that lost a lock race runs again) with the owner's usage. Raises
    OverLimit to undo the claim; records what it granted."""

    def __init__(self, project: str | None, limits: ProjectLimits, *, new_image: bool,
                 upload: bool, declared: int | None = None, unified: bool = True,
                 stage: bool = False) -> None:
        """``stage``: the claim of a stage (glance-direct), held to image_stage_total and
        image_count_uploading; ``upload``: of an upload, held to image_size_total and
        image_count_uploading."""
        self.project = project
        self.limits = limits
        self.new_image = new_image
        self.upload = upload
        self.stage = stage
        # The size resource the reservation is taken from.
        self.resource = IMAGE_STAGE_TOTAL if stage else IMAGE_SIZE_TOTAL
        self.declared = declared
        self._unified = unified
        # The bytes the upload may write (its stream's hard cap; None: no quota bounds it),
        # and what the others held when it was granted.
        self.granted: int | None = None
        self.used = 0

    @property
    def needed(self) -> bool:
        """Whether any limit applies to this request (else no lock need be taken)."""
        names = [IMAGE_COUNT_TOTAL] if self.new_image else []
        if self.upload or self.stage:
            names += [IMAGE_COUNT_UPLOADING, self.resource]
        return any(self.limits.get(name) is not None for name in names)

    @property
    def bounds_uploads(self) -> bool:
        """Whether a limit applies to uploads (their count or their bytes)."""
        return any(self.limits.get(name) is not None
                   for name in (IMAGE_COUNT_UPLOADING, IMAGE_SIZE_TOTAL))

    def __call__(self, usage: Usage) -> int | None:
        """Check ``usage`` (this image counted) against the limits; the bytes to reserve for
        the upload (None: unbounded)."""
        if self.new_image:
            self._check_count(IMAGE_COUNT_TOTAL, usage.count_total)
        self.granted = None
        if not (self.upload or self.stage):
            return None
        self._check_count(IMAGE_COUNT_UPLOADING, usage.count_uploading)
        limit = self.limits.get(self.resource)
        if limit is None:
            return None
        used = usage.stage_total if self.stage else usage.size_total
        self.used = used
        remaining = max(limit - used, 0)
        wanted = self.declared
        # Nothing left refuses an upload of unknown length at once (any byte would be cut).
        if (wanted is None and remaining == 0) or (wanted is not None and wanted > remaining):
            raise self.size_error(used, wanted or 1)
        self.granted = remaining if wanted is None else wanted
        return self.granted

    def _check_count(self, resource: str, count: int) -> None:
        limit = self.limits.get(resource)
        if limit is not None and count > limit:
            # The image being admitted is the delta; the usage is without it.
            raise over_limit(self.project, resource, limit, count - 1, 1)

    def size_error(self, used: int, delta: int) -> OverLimit:
        """The refusal of ``delta`` more bytes beyond ``used``."""
        limit = self.limits.get(self.resource) or 0
        if not self._unified and not self.stage:
            remaining = max(limit - used, 0)
            return OverLimit("Denying attempt to upload image because it exceeds the quota: "
                             f"the remaining storage quota is {remaining} bytes of {limit}.")
        # Glance's units: usage rounded down, the delta up (so a cut stream reads as over).
        return over_limit(self.project, self.resource, limit // MiB, used // MiB,
                          -(-delta // MiB))


def over_limit(project: str | None, resource: str, limit: int, usage: int,
               delta: int) -> OverLimit:
    """Glance's 413 for a unified limit (its LimitExceeded around oslo.limit's message)."""
    return OverLimit(f"{_EXCEEDED}Project {project} is over a limit for [Resource {resource} "
                     f"is over limit of {limit} due to current usage {usage} and delta "
                     f"{delta}]", code="quota")


def report(limits: ProjectLimits, usage: Usage) -> dict[str, dict[str, int]]:
    """``/v2/info/usage``'s document: every resource's limit and usage in Glance's units
    (MiB for sizes, usage rounded down); -1 for unlimited."""
    document = {}
    for name in RESOURCES:
        limit, used = limits.get(name), usage.of(name)
        if name in SIZE_RESOURCES:
            limit = None if limit is None else limit // MiB
            used //= MiB
        document[name] = {"limit": -1 if limit is None else limit, "usage": used}
    return document
