"""The image domain's data: images, members, locations, callers, list queries, commands.

Nothing here belongs to an API version: v1's ``is_public`` and ``can_share`` are views that the
v1 codec computes from ``visibility`` and the member status.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any


class Status(enum.StrEnum):
    QUEUED = "queued"
    SAVING = "saving"
    UPLOADING = "uploading"  # data staged, not yet imported (v2 interoperable import)
    IMPORTING = "importing"
    ACTIVE = "active"
    KILLED = "killed"
    DELETED = "deleted"
    PENDING_DELETE = "pending_delete"
    DEACTIVATED = "deactivated"


class Visibility(enum.StrEnum):
    PUBLIC = "public"  # everyone sees and lists it
    COMMUNITY = "community"  # everyone may see it; listed for others only when asked for
    SHARED = "shared"  # the owner and its accepted members
    PRIVATE = "private"  # the owner only; memberships are kept but have no effect


class MemberStatus(enum.StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class LocationStatus(enum.StrEnum):
    ACTIVE = "active"
    PENDING_DELETE = "pending_delete"  # data the store still holds, to be deleted later


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling: built by the auth layer, read by the domain's policy.

    ``tenant`` and ``user`` are Keystone's project and user ids. The fields after ``owner``
    are what a validated Keystone token adds (trusted headers leave them at their defaults):
    they are carried so that policy rules (Glance's check strings name them) can read them.
    """

    tenant: str | None
    user: str | None
    roles: tuple[str, ...]  # lower case, implied roles included
    is_admin: bool
    owner: str | None  # the identity that owns what this caller creates
    user_domain_id: str | None = None
    project_domain_id: str | None = None
    domain_id: str | None = None  # set only by a domain-scoped token
    system_scope: str | None = None  # "all" for a system-scoped token
    service_roles: tuple[str, ...] = ()  # of a valid X-Service-Token, lower case
    service_user: str | None = None
    service_project: str | None = None
    expires_at: dt.datetime | None = None  # the user token's expiry (aware, UTC)
    is_admin_project: bool = True  # Keystone's default when the token does not say
    trust_id: str | None = None
    trustor_user: str | None = None
    application_credential_id: str | None = None
    audit_id: str | None = None  # the token's first audit id: how logs name a token

    @property
    def project_id(self) -> str | None:
        return self.tenant

    @property
    def user_id(self) -> str | None:
        return self.user


@dataclasses.dataclass(frozen=True)
class Location:
    """Where one copy of an image's data is: a store (or the external ``http`` source) and the
    object's key or URL there. Never rendered with its URL unless an API explicitly asks."""

    store: str
    url: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    status: LocationStatus = LocationStatus.ACTIVE


@dataclasses.dataclass
class Image:
    # The columns of the images table, in its order (the repository builds Images from rows
    # positionally), then what other tables hold.
    id: str
    status: Status
    name: str | None = None
    size: int | None = None  # None until the data is known
    virtual_size: int | None = None
    checksum: str | None = None
    os_hash_algo: str | None = None
    os_hash_value: str | None = None
    disk_format: str | None = None
    container_format: str | None = None
    min_disk: int = 0
    min_ram: int = 0
    visibility: Visibility = Visibility.SHARED
    protected: bool = False
    os_hidden: bool = False
    owner: str | None = None
    created_at: dt.datetime = dataclasses.field(default_factory=lambda: now())
    updated_at: dt.datetime = dataclasses.field(default_factory=lambda: now())
    deleted_at: dt.datetime | None = None
    deleted: bool = False
    # While saving: where a failed upload leaves the image (the API's failure rule, recorded
    # with the claim, so that recovering an upload whose server died follows it too).
    failure_status: Status | None = None
    # While saving or importing: which process runs the upload (the claim). ``claim_node``
    # names the node (its host and data directory), ``claim_incarnation`` the process's run
    # on it, new at each start: a restarted process ends the uploads of its node's dead
    # incarnations at once, and leaves other nodes' to the heartbeat timeout. Stale (not
    # cleared) once the image is neither saving nor importing.
    claim_node: str | None = None
    claim_incarnation: str | None = None
    properties: dict[str, str | None] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    locations: list[Location] = dataclasses.field(default_factory=list)

    @property
    def data_location(self) -> Location | None:
        """The first location whose data is complete (not one being deleted from its store);
        downloads choose among them by store weight (domain/store_choice.py)."""
        return next((loc for loc in self.locations if loc.status is LocationStatus.ACTIVE),
                    None)


# The fields that hold rows of other tables, not columns of images.
RELATED_FIELDS = ("properties", "tags", "locations")


@dataclasses.dataclass(frozen=True)
class Member:
    image_id: str
    member_id: str
    status: MemberStatus = MemberStatus.ACCEPTED
    can_share: bool = False
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where a create or update asks the image's data to come from, besides a request body:
    an external URL to point at (``location``) or to copy from, and the store to write to."""

    location: str | None = None
    copy_from: str | None = None
    store: str | None = None

    @property
    def url(self) -> str | None:
        """The external URL given, to point at or to copy from (at most one may be)."""
        return self.location if self.location is not None else self.copy_from


@dataclasses.dataclass
class ImageInput:
    """What a create request asks for, in domain terms.

    ``fields`` holds only the core attributes present in the request (a None value means the
    client explicitly asked for null); ``properties`` the custom properties present.
    """

    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    properties: dict[str, str | None] = dataclasses.field(default_factory=dict)
    tags: list[str] = dataclasses.field(default_factory=list)
    source: DataSource = DataSource()


# -- changes: what an update asks for, as neutral commands applied in order ------------------


@dataclasses.dataclass(frozen=True)
class SetFields:
    values: Mapping[str, Any]
    # v2: the disk and container formats describe the data, so they may change only while the
    # image has none (queued, importing). v1 never had this rule.
    formats_need_no_data: bool = False


class Presence(enum.Enum):
    """What a property set expects of the properties it names, checked on the image as read
    and the commands before it (a failed expectation is a Conflict and changes nothing)."""

    ANY = "any"  # set whether or not present
    PRESENT = "present"  # replace only: the property must exist (v2 replace)
    ABSENT = "absent"  # add only: the property must not exist (v2.0's draft-4 add)


@dataclasses.dataclass(frozen=True)
class SetProperties:
    values: Mapping[str, str | None]
    presence: Presence = Presence.ANY


@dataclasses.dataclass(frozen=True)
class RemoveProperties:
    names: frozenset[str]
    missing_ok: bool = True  # False: removing a property the image lacks is a Conflict


@dataclasses.dataclass(frozen=True)
class RemoveOtherProperties:
    """Remove every property not named here (v1 resends the properties it keeps)."""

    keep: frozenset[str]


@dataclasses.dataclass(frozen=True)
class AddTag:
    tag: str


@dataclasses.dataclass(frozen=True)
class RemoveTag:
    tag: str
    missing_ok: bool = False


@dataclasses.dataclass(frozen=True)
class SetTags:
    """Replace the whole tag list (duplicates collapse, the first occurrence's order kept)."""

    tags: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class LocationInput:
    """A location as a client gives it (v2's legacy ``locations`` attribute): a URL, metadata
    to keep with it, and hashes the client says the data has (``checksum``, ``os_hash_algo``,
    ``os_hash_value``)."""

    url: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    validation: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class AddLocation:
    """Insert a location at ``position`` (None: after the last)."""

    location: LocationInput
    position: int | None = None


@dataclasses.dataclass(frozen=True)
class RemoveLocation:
    """Forget the location at ``position`` (None: the last), deleting glimpse's own copy of the
    data it named."""

    position: int | None = None


@dataclasses.dataclass(frozen=True)
class ReplaceLocations:
    """Set the whole list: on an image without locations, new ones; on one with locations, the
    same URLs (in any order) with new metadata."""

    locations: tuple[LocationInput, ...]


LocationCommand = AddLocation | RemoveLocation | ReplaceLocations
Command = (SetFields | SetProperties | RemoveProperties | RemoveOtherProperties | AddTag
           | RemoveTag | SetTags | AddLocation | RemoveLocation | ReplaceLocations)


@dataclasses.dataclass
class Changes:
    """Commands folded into what the repository applies in one transaction, to the stored
    state (never to an earlier read), so concurrent changes of one image keep each other's."""

    fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    set_properties: dict[str, str | None] = dataclasses.field(default_factory=dict)
    remove_properties: set[str] = dataclasses.field(default_factory=set)
    keep_properties: frozenset[str] | None = None  # remove all others (after the sets above)
    keep_namespace: str = ""  # ... but those whose name starts with this (never removed so)
    add_tags: list[str] = dataclasses.field(default_factory=list)
    remove_tags: set[str] = dataclasses.field(default_factory=set)
    # The whole tag list, replacing the stored one (add_tags and remove_tags are then empty).
    replace_tags: list[str] | None = None
    # The whole location list, replacing the stored one (None: unchanged), only if the stored
    # one is still ``locations_before``: a compare-and-swap, as a status change is (the
    # repository raises Conflict otherwise).
    locations: list[Location] | None = None
    locations_before: list[Location] | None = None
    # Applied only if the stored properties named here still have these values (None:
    # absent), checked under the image's row lock: a compare-and-set (the repository changes
    # nothing and returns None otherwise, as for a status that moved). Takes an import lock.
    properties_before: dict[str, str | None] | None = None

    @property
    def touches_related(self) -> bool:
        return bool(self.set_properties or self.remove_properties or self.add_tags
                    or self.remove_tags or self.keep_properties is not None
                    or self.replace_tags is not None)


# -- list queries --------------------------------------------------------------------------


class Scope(enum.Enum):
    """Which images a list may return, before filters."""

    VISIBLE = "visible"  # public, owned by the caller, or shared with the caller
    ALL = "all"
    NON_PUBLIC = "non_public"


class Op(enum.StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    # Outside the half-open range (low, high): below low or at/above high. v2 compares a
    # timestamp given to the second with the whole second it names (``neq``).
    OUTSIDE = "outside"


@dataclasses.dataclass(frozen=True)
class Filter:
    """One condition on a core image field.

    Null (an unset field) is a value of its own: ``EQ None`` matches it, ``NEQ v`` and
    ``OUTSIDE`` include it (an unset name is not "x"), ``IN`` matches it when the tuple holds
    None, and the orderings never match it. The orderings take no None value.
    """

    field: str
    op: Op
    value: Any  # a tuple of values for Op.IN

    def __post_init__(self) -> None:
        # Programming errors, not client ones: an API checks what it accepts before this.
        # (The field table builds on this module, so it is read here, not imported above.)
        from glimpse.domain.fields import FILTERABLE

        if self.field not in FILTERABLE:
            raise ValueError(f"not a filterable field: {self.field}")
        if self.op is Op.IN and not isinstance(self.value, tuple):
            raise TypeError("Op.IN takes a tuple of values")
        if self.op is Op.OUTSIDE and not (isinstance(self.value, tuple) and len(self.value) == 2
                                          and None not in self.value):
            raise TypeError("Op.OUTSIDE takes a (low, high) tuple")
        if self.value is None and self.op not in (Op.EQ, Op.NEQ):
            raise ValueError(f"{self.op} takes no None value")


@dataclasses.dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = True

    def __post_init__(self) -> None:
        from glimpse.domain.fields import SORTABLE

        if self.field not in SORTABLE:
            raise ValueError(f"not a sort key: {self.field}")


@dataclasses.dataclass
class ListQuery:
    """One page of a list: which images (scope, filters), in which order, from where.

    Within Scope.VISIBLE a shared image is listed for a member whose membership has
    ``member_status`` (None: any status). Other owners' community images are listed when
    ``others_community`` is True and left out when it is False; None leaves them to the scope
    (VISIBLE leaves them out, ALL and NON_PUBLIC list them: v1's rules). v2 asks for them only
    with visibility=community or all.

    ``sort`` is the order asked for. The repository makes it total by appending created_at
    and id where missing, in the sort's direction when all its keys share one and descending
    when they are mixed (the v2 rule; the repository's ``_sort_columns`` says why). ``marker``
    is the last image of the previous page: the page holds the images after it in that order.
    """

    scope: Scope = Scope.VISIBLE
    owner: str | None = None  # the caller's owner identity, for Scope.VISIBLE
    filters: list[Filter] = dataclasses.field(default_factory=list)  # ANDed
    properties: dict[str, str] = dataclasses.field(default_factory=dict)  # equality, ANDed
    tags: list[str] = dataclasses.field(default_factory=list)  # the image has each, ANDed
    member_status: MemberStatus | None = MemberStatus.ACCEPTED
    others_community: bool | None = None
    changes_since: dt.datetime | None = None
    sort: list[SortKey] = dataclasses.field(default_factory=lambda: [SortKey("created_at")])
    limit: int = 25
    marker: Image | None = None
    # Load each image's locations too (v2 with show_multiple_locations or
    # show_image_direct_url); otherwise a page costs no lookup of them.
    with_locations: bool = False


def now() -> dt.datetime:
    """Naive UTC with microseconds: the form every API renders."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)
