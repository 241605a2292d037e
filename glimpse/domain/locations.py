"""v2's legacy ``locations`` attribute (spec §2.1, §2.4, §2.10): which locations a caller is
shown, and the rules of the PATCH operations on ``/locations``.

Glance lets such a PATCH name any URL its stores understand (``file://``, ``swift://``, another
image's object...), which is how OSSN-0065 lets one owner point an image at data that is not
theirs. glimpse takes only what an external source may be: an ``http``/``https`` URL that
passes the same network checks as every external URL (``ImageData.check_external``: no
credentials, no link-local or private address unless the operator allows it). glimpse's own
stored objects appear in the list (by their key, as the locations API shows them) and can be
kept, reordered in metadata, or removed, but never added.

The hashes a client gives with a location (``validation_data``) are recorded as given, not
verified: the PATCH answers with the image active, as Glance does and as its clients and
Tempest expect, and reading the whole remote data first would hold the request for minutes.
Verified locations are what the locations API (``POST /v2/images/{id}/locations``) is for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from glimpse.domain import lifecycle
from glimpse.domain.data import EXTERNAL_STORE
from glimpse.domain.limits import Limits
from glimpse.domain.model import (
    AddLocation,
    Image,
    Location,
    LocationCommand,
    LocationInput,
    LocationStatus,
    Principal,
    RemoveLocation,
    Status,
)
from glimpse.domain.policy import DEFAULT_POLICY, ImageTarget, Policy
from glimpse.errors import Conflict, Forbidden, Invalid
from glimpse.redaction import redact_url

# Statuses in which locations may be added or the list replaced (removals need active).
_EDITABLE = (Status.QUEUED, Status.ACTIVE)
# Statuses whose locations name complete data, and so are shown.
_SHOWN = (Status.ACTIVE, Status.DEACTIVATED)
VALIDATION_KEYS = ("checksum", "os_hash_algo", "os_hash_value")
# A location's metadata is kept as JSON text: bounded well below the 64 KiB a MySQL TEXT
# column holds, whatever the request body allowed.
MAX_METADATA_CHARS = 16384
_HEX = frozenset("0123456789abcdefABCDEF")

# Validates an external URL and returns the size its remote reports (or None); Conflict when
# that size contradicts the known one given.
ExternalCheck = Callable[[str, int | None], int | None]


def shown_locations(principal: Principal, image: Image,
                    policy: Policy = DEFAULT_POLICY) -> list[Location]:
    """The locations ``principal`` is shown in the image (empty when none may be): to whom
    ``get_image_location`` allows (admins, the owner's readers) and to service callers
    (``service_api``); never to members and the public (a shared or public image's URLs are
    not theirs to see: OSSN-0065, OSSN-0090); only of complete data (an upload's claimed
    object is not yet a location); not of a deactivated image but to admins (as Glance)."""
    if image.status not in _SHOWN:
        return []
    target = ImageTarget(image, principal.owner)
    if not (policy.allowed("get_image_location", principal, target)
            or policy.allowed("service_api", principal, target)):
        return []
    if image.status is Status.DEACTIVATED and not principal.is_admin:
        return []
    return [loc for loc in image.locations if loc.status is LocationStatus.ACTIVE]


def shown_url(location: Location) -> str:
    """A location's URL as any API may show it: an external URL without the credentials it may
    hold, glimpse's own data by its key in its store (never a filesystem path)."""
    return redact_url(location.url) if location.store == EXTERNAL_STORE else location.url


def dropped_data(before: Sequence[Location], after: Sequence[Location]) -> list[Location]:
    """The locations of glimpse's own stored data that ``after`` no longer holds: their objects
    are to be deleted (an external location has no data of glimpse's)."""
    kept = {(loc.store, loc.url) for loc in after}
    return [loc for loc in before
            if loc.store != EXTERNAL_STORE and (loc.store, loc.url) not in kept]


class LocationEdit:
    """Location commands applied in order to the image as read: the list they leave and the
    image fields they set (a queued image that gets a location becomes active, with the size
    its remote reports and the hashes the client gave). Nothing is written here; the service
    hands the result to the repository with the rest of the update."""

    def __init__(self, image: Image, limits: Limits, check_external: ExternalCheck) -> None:
        self._image = image
        self._limits = limits
        self._check_external = check_external
        # A queued image has no data; a location it still carries is the object of an upload
        # that failed and could not be deleted: not data to keep, so the edit starts without.
        self.locations = [] if image.status is Status.QUEUED else list(image.locations)
        self.status = image.status
        self.fields: dict[str, Any] = {}
        self.changed = False

    def apply(self, command: LocationCommand) -> None:
        if isinstance(command, AddLocation):
            self._add(command.location, command.position)
        elif isinstance(command, RemoveLocation):
            self._remove(command.position)
        else:
            self._replace(command.locations)
        self.changed = True

    def _add(self, given: LocationInput, position: int | None) -> None:
        self._check_status("add", _EDITABLE)
        hashes = self._validation([given])
        count = len(self.locations)
        at = count if position is None else position
        if not 0 <= at <= count:
            raise Invalid("Invalid position for adding a location.")
        self._limits.check_locations(count + 1)
        self.locations.insert(at, self._new(given, self.locations))
        self._activate(hashes)

    def _remove(self, position: int | None) -> None:
        self._check_status("remove", (Status.ACTIVE,))
        count = len(self.locations)
        if count == 1:
            # Bug 1587985: an active image keeps at least one location.
            raise Forbidden("Cannot remove last location in the image.")
        at = count - 1 if position is None else position
        if not 0 <= at < count:
            raise Invalid("Invalid position for removing a location.")
        del self.locations[at]

    def _replace(self, given: Sequence[LocationInput]) -> None:
        self._check_status("replace", _EDITABLE)
        if not given:
            raise Forbidden("Cannot set locations to empty list.")
        hashes = self._validation(given)
        if self.locations:
            self.locations = self._same_urls(given)
        else:
            self._limits.check_locations(len(given))
            placed: list[Location] = []
            for item in given:
                placed.append(self._new(item, placed))
            self.locations = placed
        self._activate(hashes)

    def _check_status(self, verb: str, allowed: tuple[Status, ...]) -> None:
        if self.status not in allowed:
            raise Conflict(f"It's not allowed to {verb} locations if image status is "
                           f"{self.status}.")

    def _same_urls(self, given: Sequence[LocationInput]) -> list[Location]:
        """Glance's rule for a list that is not empty: the same URLs, each once, whose
        metadata (and order) may change."""
        remaining = list(self.locations)
        kept = []
        for item in given:
            match = next((loc for loc in remaining if shown_url(loc) == item.url), None)
            if match is None:
                break
            remaining.remove(match)
            kept.append(dataclasses.replace(match, metadata=_own_metadata(item.metadata)))
        else:
            if not remaining:
                return kept
        raise Invalid("Original locations is not empty: a replacement may change the metadata "
                      "and order of the image's locations, not their URLs.")

    def _new(self, given: LocationInput, others: Sequence[Location]) -> Location:
        """A new external location, checked as every external source is."""
        url = given.url
        if any(url in (loc.url, shown_url(loc)) for loc in others):
            raise Invalid("The location is already one of the image's locations.")
        known = self.fields.get("size", self._image.size)
        remote = self._check_external(url, known or None)
        if not known and remote is not None:
            self.fields["size"] = remote
        return Location(EXTERNAL_STORE, url, _own_metadata(given.metadata))

    def _activate(self, hashes: dict[str, str]) -> None:
        if self.status is Status.QUEUED:
            lifecycle.check_transition(Status.QUEUED, Status.ACTIVE)
            self.fields.update(hashes)
            self.fields["status"] = self.status = Status.ACTIVE

    def _validation(self, given: Sequence[LocationInput]) -> dict[str, str]:
        """The hashes the locations give that the image lacks (Glance's rules, all 409): the
        locations must agree, a hash already set must be given unchanged, and new ones only
        for a queued image, in the deployment's algorithm and of the right lengths."""
        merged: dict[str, str] = {}
        for item in given:
            for key, value in item.validation.items():
                if key not in VALIDATION_KEYS or not isinstance(value, str):
                    raise Invalid("validation_data takes the strings "
                                  f"{', '.join(VALIDATION_KEYS)}.")
                if merged.setdefault(key, value) != value:
                    raise Conflict(f"Conflicting values for {key}")
        new: dict[str, str] = {}
        for key, value in merged.items():
            current = self.fields.get(key, getattr(self._image, key))
            if value == current:
                continue
            if current:
                raise Conflict(f"{key} is already set with a different value")
            new[key] = value
        if not new:
            return {}
        if self.status is not Status.QUEUED:
            raise Conflict(f"New value(s) for {', '.join(new)} may only be provided when image "
                           "status is 'queued'")
        checksum = new.get("checksum")
        if checksum is not None and not _is_hex(checksum, 32):
            raise Conflict("checksum is not a 32-digit hexadecimal md5 value.")
        algo = new.get("os_hash_algo", self._image.os_hash_algo)
        hash_value = new.get("os_hash_value", self._image.os_hash_value)
        if "os_hash_algo" in new or "os_hash_value" in new:
            wanted = self._limits.multihash_algorithm
            if algo != wanted:
                raise Conflict(f"os_hash_algo must be {wanted}.")
            length = hashlib.new(wanted).digest_size * 2
            if hash_value is None or not _is_hex(hash_value, length):
                raise Conflict(f"os_hash_value is not a {length}-digit hexadecimal {wanted} "
                               "value.")
        return new


def _own_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A location's metadata as kept: glimpse names the store itself (``store`` is shown from
    where the data is, never from what a client wrote)."""
    own = {k: v for k, v in metadata.items() if k != "store"}
    if len(json.dumps(own)) > MAX_METADATA_CHARS:
        raise Invalid(f"A location's metadata may hold at most {MAX_METADATA_CHARS} characters "
                      "of JSON.")
    return own


def _is_hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in _HEX for c in value)
