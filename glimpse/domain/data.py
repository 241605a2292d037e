"""The data path: receiving an image's data into a store, copying it from an external source,
the size and storage limits it is held to, releasing stored data, and recovering from uploads
whose server died.

An upload claims the image (queued -> saving, recording where the data goes, in one
conditional update), streams through the stages with no transaction open, then finishes with
another conditional update (saving -> active). A failure moves the image as the caller's
``FailureRule`` says (v1: killed; v2: back to queued) and deletes whatever reached the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import itertools
import logging
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, BinaryIO, ClassVar

from glimpse.domain import lifecycle
from glimpse.domain.caching import ImageCache, Source, is_cacheable, stale
from glimpse.domain.events import Events
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.limits import Limits
from glimpse.domain.model import Changes, Image, Location, LocationStatus, Status, now
from glimpse.domain.ports import (
    ExternalSource,
    ImageRepository,
    ProcessIdentity,
    Store,
    shared_store,
)
from glimpse.domain.quotas import (
    IMAGE_SIZE_TOTAL,
    Admission,
    LimitSource,
    ProjectLimits,
    StaticLimits,
    Usage,
)
from glimpse.domain.store_choice import StoreCatalog
from glimpse.domain.uploads import UploadGuard
from glimpse.errors import (
    Conflict,
    GlimpseError,
    Gone,
    Invalid,
    OverLimit,
    PreconditionFailed,
    RangeNotSatisfiable,
    Unavailable,
)
from glimpse.streams.expected_hash import ExpectedHash
from glimpse.streams.inspection import InspectionStage, Inspector
from glimpse.streams.upload import UploadStream

log = logging.getLogger(__name__)

# The name recorded as the store of data left behind an external URL. The store registry owns
# every store name; app.py checks that it gives this one to the external source.
EXTERNAL_STORE = "http"


@dataclasses.dataclass(frozen=True)
class StoreNames:
    """What the store registry says about names a request may give (app.py passes it in):
    aliases of configured stores, and names that are read-only sources, never written to."""

    aliases: Mapping[str, str] = dataclasses.field(default_factory=dict)
    read_only: tuple[str, ...] = (EXTERNAL_STORE,)


@dataclasses.dataclass(frozen=True)
class HashCheck:
    """A hash the data must have: an algorithm hashlib knows, and the lower-case hex value."""

    algorithm: str
    value: str

    # The algorithms a client may name, with their digest sizes in hex digits.
    HEX_LENGTHS: ClassVar[dict[str, int]] = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}

    @classmethod
    def of(cls, algorithm: Any, value: Any) -> HashCheck:
        """A check from client input; Invalid naming what is wrong with it."""
        if not isinstance(algorithm, str) or algorithm not in cls.HEX_LENGTHS:
            raise Invalid(f"Unsupported hash algorithm {algorithm!r}: use one of "
                          f"{', '.join(cls.HEX_LENGTHS)}.")
        length = cls.HEX_LENGTHS[algorithm]
        if (not isinstance(value, str) or len(value) != length
                or any(c not in "0123456789abcdefABCDEF" for c in value)):
            raise Invalid(f"A {algorithm} hash value is {length} hexadecimal digits.")
        return cls(algorithm, value.lower())


@dataclasses.dataclass(frozen=True)
class Upload:
    """Image data arriving with a request: its chunks and the length the transport told."""

    chunks: Iterable[bytes]
    length: int | None  # Content-Length, None when chunked
    # The hash the client says the data has (a header of each API); checked as it streams.
    expected_hash: ExpectedHash | None = None


@dataclasses.dataclass(frozen=True)
class Download:
    """Image data to send: an open local file (zero-copy capable) or a stream of chunks.

    ``offset`` and ``length`` say which bytes: the file is sent from ``offset`` (its position
    means nothing), the chunks already start there. ``length`` is the byte count to promise
    the client; None only for an external location of unknown size (the remote did not say).
    """

    image: Image
    chunks: Iterator[bytes] | None = None
    file: BinaryIO | None = None
    offset: int = 0
    length: int | None = 0
    # Called by whoever sends the data, with the byte count, once the whole body has gone
    # (not for HEAD, nor for a send cut short): the domain's image.send. Only the sender
    # knows when a zero-copy file has left; the domain decides what that means.
    sent: Callable[[int], None] | None = None


# Given an image's data size, the (offset, length) to read of it; length None: to the end.
RangeChooser = Callable[[int], tuple[int, int | None]]


def data_size(image: Image) -> int | None:
    """The size of an image's data; None for an external location of unknown size."""
    location = image.data_location
    if location is not None and location.store == EXTERNAL_STORE and not image.size:
        return None
    return image.size or 0


def data_window(size: int | None, offset: int, length: int | None) -> tuple[int, int | None]:
    """Check a read of ``length`` bytes at ``offset`` against data of ``size`` bytes (None:
    unknown); the length it reads (clamped to the end; None: to an unknown end)."""
    if offset < 0 or (length is not None and length <= 0):
        raise Invalid("A read of image data needs an offset of 0 or more and a positive length")
    if size is None:
        return offset, length
    if offset and offset >= size:
        raise RangeNotSatisfiable(f"The image data has {size} bytes: none at offset {offset}",
                                  size)
    rest = size - offset
    return offset, rest if length is None else min(length, rest)


class ImageData:
    def __init__(
        self,
        repo: ImageRepository,
        stores: Mapping[str, Store],
        default_store: str,
        external: ExternalSource,
        limits: Limits,
        background: Executor,
        inspector: Inspector | None = None,
        names: StoreNames = StoreNames(),
        quotas: LimitSource | None = None,
        identity: ProcessIdentity | None = None,
        events: Events | None = None,
        catalog: StoreCatalog | None = None,
        cache: ImageCache | None = None,
    ) -> None:
        self._repo = repo
        # The stores' weights, by which downloads choose among an image's copies (None: the
        # image's order).
        self._catalog = catalog
        # The node's image cache (glimpse.cache), None when the operator set none.
        self.cache = cache
        # Recorded on every claim; None (tests of the domain alone): claims name no process,
        # and only the heartbeat timeout recovers their uploads.
        self._identity = identity
        # Notifications of the data path (image.prepare, image.upload, image.activate).
        self.events = events or Events()
        self._quotas: LimitSource = quotas or StaticLimits(limits.user_storage_quota)
        self._stores = stores
        self._names = names
        self.default_store = names.aliases.get(default_store, default_store)
        self.external = external
        self._limits = limits
        self._background = background
        self._inspector = inspector
        self.uploads = UploadGuard(repo, limits.upload_heartbeat_interval)

    # -- reading ----------------------------------------------------------------------------

    def open(self, image: Image, offset: int = 0, length: int | None = None) -> Download:
        """The image's data from ``offset``, ``length`` bytes of it (to the end when None),
        read from a store at that offset. RangeNotSatisfiable for an offset past the data,
        Invalid for a negative offset or a length below 1.

        An image with copies in several stores is read from the one of highest weight; when
        that store fails before its first byte (unreachable, the object gone), the next copy
        is tried, and so on (docs/multi-store.md). The first error is raised when every copy
        fails. Once a byte has left, a failure is the sender's to report (it cuts the
        connection short of the promised length): never another store's bytes spliced in."""
        size = data_size(image)
        offset, length = data_window(size, offset, length)
        candidates = self._reading_order(image)
        if not candidates or length == 0:
            return Download(image, chunks=iter(()), offset=offset, length=length)
        # A read that reaches the end asks for no length: all of the data stays a plain GET
        # (which a remote that ignores ranges serves too), and the rest a "bytes=o-".
        bound = length if size is None or length is None or offset + length < size else None
        first_error: Exception | None = None
        for location in candidates:
            try:
                return self._open_copy(image, location, offset, length, bound)
            except Exception as exc:  # any store failure: the next copy may serve
                if first_error is None:
                    first_error = exc
                if len(candidates) > 1:
                    log.warning("image %s: reading its copy in store %s failed (%s); trying "
                                "the next copy", image.id, location.store, _reason(exc))
        assert first_error is not None
        raise first_error

    def _reading_order(self, image: Image) -> list[Location]:
        if self._catalog is not None:
            return self._catalog.reading_order(image.locations)
        return [loc for loc in image.locations if loc.status is LocationStatus.ACTIVE]

    def _open_copy(self, image: Image, location: Location, offset: int, length: int | None,
                   bound: int | None) -> Download:
        """The data of one copy, its first chunk already read (so a store that fails at once,
        whether on open or on the first read, fails here, before anything is sent)."""
        if location.store == EXTERNAL_STORE:
            chunks = self.external.open(location.url, offset, bound)
        else:
            store = self._stores.get(location.store)
            if store is None:
                # Data written through a store this deployment no longer configures.
                raise Unavailable(f"The data of image {image.id} is in store {location.store}, "
                                  "which is not configured here.")
            local = store.open_file(location.url)
            if local is not None:
                return Download(image, file=local, offset=offset, length=length)
            if self.cache is not None and length is not None and is_cacheable(image):
                # A remote store's data: served from the node's cache, which the first reader
                # fills. Only an active image is read here (ImageService.open_data checked its
                # status and the caller's rights first, on every hit too).
                try:
                    got = self.cache.read(image, offset, length,
                                          self._source(image, location), fill=True)
                except OSError as exc:
                    # The node's cache failed (its disk full or unwritable): the download must
                    # not, while the store can serve it.
                    log.warning("image %s: the cache failed, read from its store: %s",
                                image.id, exc)
                else:
                    return Download(image, chunks=got.chunks, file=got.file, offset=offset,
                                    length=length)
            chunks = store.open(location.url, offset, bound)
        first = next(chunks, None)
        if first is None:
            if length is None:  # an external source of unknown size: empty is an answer
                return Download(image, chunks=iter(()), offset=offset, length=length)
            raise Unavailable(f"Store {location.store} returned no data for image {image.id}.")
        return Download(image, chunks=itertools.chain([first], chunks), offset=offset,
                        length=length)

    # -- the node's cache -------------------------------------------------------------------

    def _source(self, image: Image, location: Location | None = None) -> Source:
        """Reads of the image's copy at ``location`` (default: the first one to read)."""
        if location is None:
            order = self._reading_order(image)
            location = order[0] if order else None
        store = self._stores.get(location.store) if location is not None else None
        if location is None or store is None:
            raise Unavailable(f"The data of image {image.id} is in no configured store.")
        url = location.url
        return lambda offset, length: store.open(url, offset, length)

    def prefetch(self, image_id: str) -> bool:
        """Cache a queued image now; whether it left the queue (cached, or not cacheable).
        An image queued by an operator is cached whatever store holds it."""
        if self.cache is None:
            return True
        image = self._repo.get(image_id)
        if image is None or stale(image) or not is_cacheable(image):
            self.cache.discard(image_id)
            return True
        return self.cache.warm(image, self._source(image))

    def uncache(self, image_id: str) -> None:
        """Drop an image from this node's cache at once (deleted, deactivated); other nodes
        refuse it by its status and drop it in their sweep."""
        if self.cache is not None:
            self.cache.discard(image_id)

    def sweep_cache(self) -> int:
        """Drop this node's copies of images that are gone or no longer active; how many."""
        if self.cache is None:
            return 0
        dropped = 0
        for image_id in self.cache.held_ids():
            if stale(self._repo.get(image_id)):
                dropped += self.cache.discard(image_id)
        return dropped

    # -- choosing where data goes -----------------------------------------------------------

    def writable_store(self, name: str | None, upload: Upload | None) -> str:
        name = self._names.aliases.get(name, name) if name else self.default_store
        if name in self._names.read_only:
            if upload is not None:
                raise Gone(f"Store {name} is read-only: image data cannot be uploaded to it")
            return self.default_store
        if name not in self._stores:
            shown = name if len(name) <= 64 else name[:64] + "..."
            raise Invalid(f"Required store {shown} is invalid")
        return name

    def claim_fields(self) -> dict[str, Any]:
        """The fields a claim records about the process that runs the upload."""
        if self._identity is None:
            return {}
        return {"claim_node": self._identity.node,
                "claim_incarnation": self._identity.incarnation}

    def claimed_location(self, image_id: str, store: str) -> Location:
        """Where an upload into ``store`` writes: the object key is the image id, or the URL a
        shared store gives that key (an RBD store: rbd://<fsid>/<pool>/<image id>/snap)."""
        target = shared_store(self._stores.get(store))
        if target is not None:
            return Location(store, target.location_url(image_id))
        return Location(store, image_id)

    def check_not_in_use(self, image: Image) -> None:
        """Conflict (409, "in use") when another service depends on the image's stored data:
        deleting it would break a server's disk or a volume cloned from it (Glance answers
        the same). The store refuses as well, should a clone appear after this check."""
        for location in image.locations:
            store = shared_store(self._stores.get(location.store))
            if store is not None and store.in_use(location.url):
                raise Conflict(
                    f"Image {image.id} could not be deleted because it is in use: the image "
                    "cannot be deleted because it is in use through the backend store outside "
                    "of glimpse.", code="in_use")

    def check_external(self, url: str, declared_size: int | None) -> int | None:
        """Validate an external URL; the size the remote reports, if any."""
        self.external.validate(url)
        remote = self.external.size(url)
        if declared_size and remote and declared_size != remote:
            raise Conflict("Provided image size must match the stored image size.")
        return remote

    def point_at(self, image: Image, url: str) -> Image:
        """Activate a queued image whose data stays behind an external URL."""
        lifecycle.check_transition(image.status, Status.ACTIVE)
        active = self._repo.update(
            image.id, Changes(fields={"status": Status.ACTIVE, "updated_at": now()}),
            expected_status=Status.QUEUED, add_locations=[Location(EXTERNAL_STORE, url)],
        )
        if active is None:
            raise Conflict("Cannot set the location of an unqueued image")
        self.events.image("image.activate", active)
        return active

    # -- receiving --------------------------------------------------------------------------

    def copy_in_background(self, image_id: str, url: str, store: str,
                           on_failure: FailureRule) -> None:
        self._background.submit(self._copy, image_id, url, store, on_failure)

    def _copy(self, image_id: str, url: str, store: str, on_failure: FailureRule) -> None:
        image = self._repo.get(image_id)
        if image is None:
            return

        def remote_chunks() -> Iterator[bytes]:
            # Opened only once the image is claimed, so a source that fails at once still
            # goes through the upload's failure path.
            yield from self.external.open(url)

        try:
            self.receive(image, remote_chunks(), store, on_failure)
        except GlimpseError as exc:
            log.warning("copy-from for image %s failed: %s", image_id, exc.message)
        except Exception:
            log.exception("copy-from for image %s failed", image_id)

    # -- quotas -------------------------------------------------------------------------------

    def admission(self, owner: str | None, *, new_image: bool, upload: bool,
                  declared: int | None = None, stage: bool = False) -> Admission:
        """The quota check of a create (``new_image``), an upload's claim or a stage's, with
        the owner's limits read now (Unavailable when their source cannot tell)."""
        return Admission(owner, self._quotas.limits(owner), new_image=new_image, upload=upload,
                         declared=declared, unified=self._quotas.unified, stage=stage)

    def quota_report(self, owner: str | None) -> tuple[ProjectLimits, Usage] | None:
        """The owner's limits and usage (``/v2/info/usage``); None without unified limits
        (Glance then reports nothing)."""
        if not self._quotas.unified:
            return None
        return self._quotas.limits(owner), self._repo.quota_usage(owner)

    # -- receiving: claim, stream, finish -------------------------------------------------------

    def receive(
        self, image: Image, chunks: Iterable[bytes], store_name: str, on_failure: FailureRule,
        claimed: bool = False, length: int | None = None,
        expected_hash: ExpectedHash | None = None,
    ) -> Image:
        """Stream data into a store: claim (unless the image was created claimed), stream with
        no transaction open, then finish. ``length``: the byte count the transport declared
        (Content-Length), which the quotas reserve when given. ``expected_hash``: the hash
        the client says the data has; a mismatch fails the upload as any bad data does."""
        location = self.claimed_location(image.id, store_name)
        admitted = None
        self.events.prepare(image)
        if not claimed:
            # The limits are read before the claim's transaction (a remote call), and checked
            # in it, under the owner's lock.
            admission = self.admission(
                image.owner, new_image=False, upload=True,
                declared=length if length is not None else image.size or None)
            # Where the data goes is recorded before any byte is written: if the upload fails
            # and the store cannot be cleaned at once, purge_leftovers() finds it there later,
            # and so does the sweep after a server died mid-upload.
            # A requeued image may still have it, if its store could not delete the data of
            # the failed try: this upload overwrites that object, under the one location.
            lifecycle.check_transition(image.status, Status.SAVING)
            try:
                update = self._repo.update(
                    image.id, Changes(fields={"status": Status.SAVING, "updated_at": now(),
                                              "failure_status": on_failure.status,
                                              **self.claim_fields()}),
                    expected_status=Status.QUEUED,
                    add_locations=[] if location in image.locations else [location],
                    admit=admission if admission.needed else None,
                )
            except OverLimit:
                # Refused before any byte: v1's image is spent, v2's stays queued.
                if on_failure.status is not Status.QUEUED:
                    self._move(image.id, Status.QUEUED, on_failure.status)
                raise
            if update is None:
                raise Conflict("Cannot upload to an unqueued image")
            image = update
            admitted = admission
        store = self._stores[store_name]
        expected = image.size or None
        stages = self.stages(image, chunks, Status.SAVING, expected, admitted, expected_hash)
        stream, watched = stages.stream, stages.watched
        try:
            if expected is not None and expected > stages.limit:
                raise stages.limit_error
            store.put(location.url, stages.output)
            if expected is not None and stream.size != expected:
                raise Invalid(f"Size of the uploaded data ({stream.size} bytes) does not match "
                              f"the declared size ({expected} bytes).")
            if image.checksum and image.checksum != stream.checksum:
                raise Invalid(f"Checksum of the uploaded data ({stream.checksum}) does not match "
                              f"the declared checksum ({image.checksum}).")
        except BaseException as exc:
            # A stage after the watch (the cap, the quota, the inspector) leaves it suspended:
            # closed now, it stops counting as in flight (else shutdown waits its timeout).
            with contextlib.suppress(ValueError):  # still running on a store's reader thread
                watched.close()
            self.events.upload_failed(image.id, exc.message if isinstance(exc, GlimpseError)
                                      else f"internal error ({type(exc).__name__})")
            try:
                self._fail(image.id, on_failure, exc)
            finally:
                self.release(image.id, location)
            raise
        lifecycle.check_transition(Status.SAVING, Status.ACTIVE)
        fields = {**stages.facts(), "status": Status.ACTIVE, "updated_at": now(),
                  "failure_status": None}
        finished = self._repo.update(image.id, Changes(fields=fields),
                                     expected_status=Status.SAVING)
        if finished is None:
            self.release(image.id, location)
            raise PreconditionFailed(
                f"Image {image.id} was deleted while its data was being uploaded."
            )
        self.events.uploaded(finished, activated=True)
        return finished

    # -- verifying an external location (v2's locations API) ----------------------------------

    def import_location(self, image: Image, url: str, expected: HashCheck | None,
                        ended: Callable[[str | None], None] | None = None) -> Image:
        """Claim a queued image for an external location (queued -> importing), then verify
        the data behind ``url`` in the background: hashed and inspected as an upload is, and
        held to ``expected`` when given. It ends active with the location and the data's
        facts, or back in queued with no location; an import whose server dies is ended the
        same way by ``recover_stale_uploads``. ``ended``: told once the image has moved, with
        None when the location verified, else why not."""
        lifecycle.check_transition(image.status, Status.IMPORTING)
        claimed = self._repo.update(
            image.id, Changes(fields={"status": Status.IMPORTING, "updated_at": now(),
                                      "failure_status": Status.QUEUED,
                                      **self.claim_fields()}),
            expected_status=Status.QUEUED,
        )
        if claimed is None:
            raise Conflict("A location can only be added to a queued image.")
        self._background.submit(self._verify_location, claimed, url, expected,
                                ended or _nobody)
        return claimed

    def _verify_location(self, image: Image, url: str, expected: HashCheck | None,
                         ended: Callable[[str | None], None]) -> None:
        try:
            facts = self._hash_external(image, url, expected)
        except BaseException as exc:
            reason = exc.message if isinstance(exc, GlimpseError) else (
                f"internal error ({type(exc).__name__})")
            if self._move(image.id, Status.IMPORTING, Status.QUEUED, failure_status=None):
                log.warning("image %s: the location did not verify (%s); back to queued",
                            image.id, reason)
            if not isinstance(exc, GlimpseError):
                log.exception("verifying the location of image %s failed", image.id)
            ended(f"The location did not verify: {reason}")
            return
        lifecycle.check_transition(Status.IMPORTING, Status.ACTIVE)
        done = self._repo.update(
            image.id, Changes(fields={**facts, "status": Status.ACTIVE, "updated_at": now(),
                                      "failure_status": None}),
            expected_status=Status.IMPORTING, add_locations=[Location(EXTERNAL_STORE, url)],
        )
        if done is None:
            log.info("image %s changed while its location was verified; left as it is", image.id)
            ended("The image changed (deleted, or its import ended) while its location was "
                  "verified.")
        else:
            self.events.image("image.activate", done)
            ended(None)

    def _hash_external(
        self, image: Image, url: str, expected: HashCheck | None
    ) -> dict[str, Any]:
        stages = self.stages(image, self.external.open(url), Status.IMPORTING, None)
        stream = stages.stream
        extra = None
        if expected is not None and expected.algorithm not in ("md5", stream.hash_algo):
            extra = hashlib.new(expected.algorithm)
        # Closed whatever happens: a stage after the watch that fails (the cap, the quota,
        # the inspector) would leave it counted as in flight (see receive).
        with contextlib.closing(stages.watched):
            for chunk in stages.output:
                if extra is not None:
                    extra.update(chunk)
        found = {"md5": stream.checksum, stream.hash_algo: stream.multihash}
        if expected is not None:
            actual = extra.hexdigest() if extra is not None else found[expected.algorithm]
            if actual != expected.value:
                raise Invalid(f"The data at the location does not match the given "
                              f"{expected.algorithm} ({actual} != {expected.value}).")
        facts = stages.facts()
        if extra is not None:
            # As Glance: the image's multihash is of the algorithm the validation data named
            # (md5 is the checksum, and leaves the multihash the configured one).
            facts.update(os_hash_algo=expected.algorithm if expected else None,
                         os_hash_value=extra.hexdigest())
        return facts

    def stages(self, image: Image, chunks: Iterable[bytes], status: Status,
               expected_size: int | None, admission: Admission | None = None,
               expected_hash: ExpectedHash | None = None) -> Stages:
        """The stages data passes through on its way in, for an image in ``status``: the
        heartbeat, the size limits and hashes, the format inspection (uploads, location
        checks, and the imports' store writes). ``admission``: the
        quota check the upload's claim passed (its reservation is the quota's cap)."""
        limit, limit_error = self.upload_limit(image, admission)
        watched = self.uploads.watch(image.id, chunks, status)
        stream = UploadStream(
            watched, limit=limit, limit_error=limit_error, expected_size=expected_size,
            hash_algo=self._limits.multihash_algorithm, expected_hash=expected_hash,
        )
        inspection = None if self._inspector is None else self._inspector.stage(
            stream, image.disk_format, image.container_format
        )
        return Stages(watched, stream, inspection, limit, limit_error)

    def upload_limit(self, image: Image,
                     admission: Admission | None = None) -> tuple[int, OverLimit]:
        """The most bytes the image's data may have, and the refusal past it: the size cap,
        or the owner's remaining size quota when smaller. An upload's claim reserved that
        quota (``admission``); data verified at an external location reserves nothing and
        is held to what remains now."""
        cap = self._limits.image_size_cap
        error = OverLimit(f"Denying attempt to upload image larger than {cap} bytes.")
        if admission is None:
            admission = self.admission(image.owner, new_image=False, upload=False)
            quota = admission.limits.get(IMAGE_SIZE_TOTAL)
            if quota is None:
                return cap, error
            used = self._repo.usage(image.owner, image.id)
            remaining = max(quota - used, 0)
        elif admission.granted is None:
            return cap, error
        else:
            remaining, used = admission.granted, admission.used
        if remaining < cap:
            return remaining, admission.size_error(used, remaining + 1)
        return cap, error

    def _fail(self, image_id: str, rule: FailureRule, cause: BaseException) -> None:
        """saving -> the rule's status, only if still saving."""
        if self._move(image_id, Status.SAVING, rule.status, failure_status=None):
            return
        current = self._repo.get(image_id)
        if current is not None and current.deleted:
            raise PreconditionFailed(
                f"Image {image_id} was deleted while its data was being uploaded."
            ) from cause

    def _move(self, image_id: str, current: Status, target: Status, **fields: Any) -> bool:
        lifecycle.check_transition(current, target)
        return self._repo.set_fields(image_id, {"status": target, "updated_at": now(),
                                                **fields}, expected_status=current)

    # -- releasing and recovering -----------------------------------------------------------

    def release(self, image_id: str, location: Location) -> bool:
        return release_data(self._repo, self._stores, image_id, location)

    def release_all(self, image: Image) -> None:
        for location in image.locations:
            self.release(image.id, location)

    def recover_stale_uploads(self) -> list[str]:
        """End the uploads whose server died as their API's failure rule says (v1 killed,
        v2 back to queued; killed when none was recorded) and delete whatever data they left:
        at once those of this node's ended incarnations (a restarted process's predecessor,
        a sibling worker that died), after the heartbeat timeout those of other nodes. Safe
        to run from every API process at once."""
        recovered = self.recover_predecessors()
        before = now() - dt.timedelta(seconds=self._limits.stale_upload_timeout)
        for image in self._repo.find_stale_uploads(before):
            if self._end(image, None):
                log.warning("image %s: upload abandoned (no heartbeat since %s); now %s",
                            image.id, image.updated_at, image.failure_status or Status.KILLED)
                recovered.append(image.id)
        return recovered

    def recover_predecessors(self) -> list[str]:
        """End the uploads and imports claimed by incarnations of this node whose process has
        ended, without waiting for their heartbeat to go stale."""
        if self._identity is None:
            return []
        recovered = []
        verdicts: dict[str, bool] = {}
        for image in self._repo.find_node_uploads(self._identity.node):
            incarnation = image.claim_incarnation
            if incarnation is None:
                continue
            if incarnation not in verdicts:
                verdicts[incarnation] = self._identity.ended(incarnation)
            # Conditional on the claim too: a v2 image requeued meanwhile and claimed again by
            # a live process is that process's upload now.
            if verdicts[incarnation] and self._end(image, incarnation):
                log.warning("image %s: its upload's process (incarnation %s) ended; now %s",
                            image.id, incarnation, image.failure_status or Status.KILLED)
                recovered.append(image.id)
        self._identity.forget_ended()
        return recovered

    def _end(self, image: Image, incarnation: str | None) -> bool:
        """Move an abandoned upload's image as its claim's failure rule says and delete its
        data; False when it finished or another process got there first."""
        target = image.failure_status or Status.KILLED
        lifecycle.check_transition(image.status, target)
        if not self._repo.set_fields(
            image.id, {"status": target, "updated_at": now(), "failure_status": None},
            expected_status=image.status, expected_incarnation=incarnation,
        ):
            return False
        self.release_all(image)
        return True

    def purge_leftovers(self, limit: int = 100) -> int:
        """Delete the data that killed and deleted images left in a store that could not be
        reached at the time; returns how many images were cleaned."""
        cleaned = 0
        for image in self._repo.leftovers(sorted(self._stores), limit):
            # A live image's leftovers are only its copies being deleted from one store
            # (DELETE /v2/stores/...); its other copies are its data.
            ended = image.status in (Status.KILLED, Status.DELETED)
            gone = [loc for loc in image.locations
                    if ended or loc.status is LocationStatus.PENDING_DELETE]
            if all([self.release(image.id, loc) for loc in gone]):
                cleaned += 1
        return cleaned


@dataclasses.dataclass(frozen=True)
class Stages:
    watched: Generator[bytes, None, None]
    stream: UploadStream
    inspection: InspectionStage | None
    limit: int
    limit_error: OverLimit

    @property
    def output(self) -> Iterable[bytes]:
        """What leaves the last stage: the bytes to store (or only to read, for a check)."""
        return self.stream if self.inspection is None else self.inspection

    def facts(self) -> dict[str, Any]:
        """The image fields the data passed in establishes."""
        facts: dict[str, Any] = {"size": self.stream.size, "checksum": self.stream.checksum,
                                 "os_hash_algo": self.stream.hash_algo,
                                 "os_hash_value": self.stream.multihash}
        if self.inspection is not None and self.inspection.virtual_size is not None:
            facts["virtual_size"] = self.inspection.virtual_size
        return facts


def _reason(exc: Exception) -> str:
    """What a log line says of a store's failure: a domain error's message (which names no
    secret), otherwise only the exception's type."""
    return exc.message if isinstance(exc, GlimpseError) else type(exc).__name__


def release_data(
    repo: ImageRepository, stores: Mapping[str, Store], image_id: str, location: Location,
) -> bool:
    """Delete an image's stored data, then forget where it was. A store that fails is logged,
    not raised: the location stays and ImageData.purge_leftovers() retries. An external
    location has no data of glimpse's to delete: it is only forgotten."""
    store = stores.get(location.store)
    if store is not None:
        try:
            store.delete(location.url)
        except GlimpseError as exc:
            log.warning("could not delete the data of image %s from store %s (will retry): %s",
                        image_id, location.store, exc.message)
            return False
    elif location.store != EXTERNAL_STORE:
        log.warning("image %s: data in store %s, which is not configured; kept",
                    image_id, location.store)
        return False
    repo.remove_location(image_id, location.store, location.url)
    return True


def _nobody(reason: str | None) -> None:
    """No one to tell how a location's verification ended."""
