"""The image service: every image operation, with its rules, in one readable place."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any, BinaryIO

from glimpse.domain import lifecycle, policy
from glimpse.domain.model import Image, ImageInput, ListQuery, Principal, Status, now
from glimpse.domain.ports import ExternalSource, ImageRepository, Store
from glimpse.domain.uploads import UploadGuard
from glimpse.domain.validation import require_formats, validate_input
from glimpse.errors import (
    Conflict,
    Forbidden,
    GlimpseError,
    Gone,
    Invalid,
    NotFound,
    OverLimit,
    PreconditionFailed,
)
from glimpse.streams.inspection import Inspector
from glimpse.streams.upload import UploadStream

log = logging.getLogger(__name__)

EXTERNAL_STORE = "http"
READ_ONLY_STORES = ("http", "https")
STORE_ALIASES = {"filesystem": "file"}


@dataclasses.dataclass(frozen=True)
class Limits:
    """The quotas and caps of spec §1 the service enforces."""

    image_size_cap: int = 1 << 40
    image_property_quota: int = 128
    image_member_quota: int = 128
    user_storage_quota: int = 0
    delayed_delete: bool = False
    disk_formats: tuple[str, ...] = ()
    container_formats: tuple[str, ...] = ()
    multihash_algorithm: str = "sha512"
    upload_heartbeat_interval: float = 10.0
    stale_upload_timeout: float = 60.0


@dataclasses.dataclass(frozen=True)
class Upload:
    """Image data arriving with a request: its chunks and what the transport told about it."""

    chunks: Iterable[bytes]
    content_type_ok: bool
    length: int | None  # Content-Length, None when chunked


@dataclasses.dataclass(frozen=True)
class Download:
    """Image data to send: an open local file (zero-copy capable) or a stream of chunks."""

    image: Image
    chunks: Iterator[bytes] | None = None
    file: BinaryIO | None = None

    @property
    def length(self) -> int | None:
        """The byte count to promise the client; None for an external location of unknown
        size (the remote did not say)."""
        if self.image.store == EXTERNAL_STORE and not self.image.size:
            return None
        return self.image.size


class ImageService:
    def __init__(
        self,
        repo: ImageRepository,
        stores: dict[str, Store],
        default_store: str,
        external: ExternalSource,
        limits: Limits,
        background: Executor,
        inspector: Inspector | None = None,
    ) -> None:
        self._repo = repo
        self._stores = stores
        self._default_store = STORE_ALIASES.get(default_store, default_store)
        self._external = external
        self._limits = limits
        self._background = background
        self.uploads = UploadGuard(repo, limits.upload_heartbeat_interval)
        self._inspector = inspector

    # -- reading ---------------------------------------------------------------------------

    def get(self, principal: Principal, image_id: str) -> Image:
        """The image if the caller may see it; NotFound otherwise (never Forbidden)."""
        image = self._repo.get(image_id) if len(image_id) <= 36 else None
        if image is None or not policy.can_see(
            principal, image, lambda: self._repo.is_member(image_id, principal.owner or "")
        ):
            raise NotFound(f"Image {image_id} not found.")
        return image

    def list_images(self, principal: Principal, query: ListQuery, is_public: bool | None,
             marker_id: str | None) -> list[Image]:
        query.scope = policy.list_scope(principal, is_public)
        query.owner = principal.owner
        if marker_id is not None:
            try:
                query.marker = self.get(principal, marker_id)
            except NotFound as exc:
                raise Invalid("Invalid marker. Image could not be found.") from exc
        return self._repo.list_images(query)

    def open_data(self, principal: Principal, image_id: str) -> Download:
        image = self.get(principal, image_id)
        if image.status is Status.DEACTIVATED:
            raise Forbidden("The requested image has been deactivated. Image data download is "
                            "forbidden.")
        if image.status is not Status.ACTIVE:
            raise NotFound(f"Image {image_id} is not active")
        if image.location is None or image.store is None:
            return Download(image, chunks=iter(()))
        if image.store == EXTERNAL_STORE:
            return Download(image, chunks=self._external.open(image.location))
        store = self._stores[image.store]
        local = store.open_file(image.location)
        if local is not None:
            return Download(image, file=local)
        return Download(image, chunks=store.open(image.location))

    # -- creating and changing ---------------------------------------------------------------

    def create(self, principal: Principal, data: ImageInput, upload: Upload | None) -> Image:
        self._check_input(principal, data, upload)
        if data.location is not None or data.copy_from is not None or upload is not None:
            require_formats(data.fields.get("disk_format"), data.fields.get("container_format"))
        self._check_property_quota(len(data.properties))
        remote_size = self._check_external(data)
        store = self._writable_store(data.store, upload)
        declared = data.fields.get("size")
        fields = _normalized(
            {k: v for k, v in data.fields.items() if k != "owner" or principal.is_admin}
        )
        fields.setdefault("owner", principal.owner)
        fields["size"] = declared if declared is not None else (remote_size or 0)
        empty = declared == 0 and upload is None and data.location is None \
            and data.copy_from is None
        stamp = now()
        image_id = data.image_id or _new_id()
        if upload is not None:
            # Created already claimed (saving, with its store recorded): nobody else can have
            # seen it queued, and a small upload is spared a transaction.
            fields.update(store=store, location=image_id)
        image = Image(
            id=image_id,
            status=Status.SAVING if upload is not None
            else Status.ACTIVE if empty else Status.QUEUED,
            properties=dict(data.properties),
            created_at=stamp,
            updated_at=stamp,
            **fields,
        )
        self._repo.create(image)
        if upload is not None:
            return self._receive(image, upload.chunks, store, claimed=True)
        return self._attach(image, data, None, store)

    def update(
        self,
        principal: Principal,
        image_id: str,
        data: ImageInput,
        upload: Upload | None,
        purge_props: bool,
    ) -> Image:
        image = self.get(principal, image_id)
        if image.deleted:
            raise Forbidden("Forbidden to update deleted image.")
        if not policy.can_modify(principal, image):
            raise Forbidden("You are not permitted to modify this image.")
        self._check_input(principal, data, upload)
        if data.image_id is not None and data.image_id != image.id:
            raise Forbidden("Forbidden to modify 'id' of image.")
        if data.status is not None and data.status != image.status:
            raise Forbidden("Forbidden to modify 'status' of image.")
        fields = dict(data.fields)
        if not principal.is_admin:
            fields.pop("owner", None)
            if image.status in (Status.ACTIVE, Status.DEACTIVATED):
                for key in ("size", "checksum"):
                    if key in fields and fields[key] != getattr(image, key):
                        raise Forbidden(f"Forbidden to modify '{key}' of {image.status} image.")
        fields = _normalized(fields)
        sources = data.location is not None or data.copy_from is not None
        if sources and image.status is not Status.QUEUED:
            raise Invalid(
                "Attempted to update Location field for an image not in queued status."
            )
        if upload is not None and image.status is not Status.QUEUED:
            raise Conflict("Cannot upload to an unqueued image")
        if upload is not None or sources:
            require_formats(
                fields.get("disk_format", image.disk_format),
                fields.get("container_format", image.container_format),
            )
        purge = upload is None and purge_props
        # Checked here on the read for a quick answer, and again by the repository on the
        # stored set, which a concurrent update may have grown meanwhile.
        self._check_property_quota(
            len(data.properties) if purge else len({**image.properties, **data.properties})
        )
        remote_size = self._check_external(data)
        if remote_size is not None and "size" not in fields and not image.size:
            fields["size"] = remote_size
        store = self._writable_store(data.store, upload)
        fields["updated_at"] = now()
        updated = self._repo.update(
            image.id, fields, properties=dict(data.properties), purge_properties=purge,
            expected_status=image.status, check_property_count=self._check_property_quota,
        )
        if updated is None:
            raise Conflict("The image changed while it was being updated; try again.")
        return self._attach(updated, data, upload, store)

    def delete(self, principal: Principal, image_id: str) -> None:
        raw = self._repo.get(image_id) if len(image_id) <= 36 else None
        # A pending_delete image is deleted for reads, but its owner is told why it can't be
        # deleted again rather than that it doesn't exist.
        if raw is not None and raw.status is Status.PENDING_DELETE and policy.can_modify(
            principal, raw
        ):
            raise Forbidden(f"Forbidden to delete a {raw.status} image.")
        image = self.get(principal, image_id)
        if image.status in (Status.DELETED, Status.PENDING_DELETE):
            raise NotFound(f"Image {image_id} not found.")
        if not policy.can_modify(principal, image):
            raise Forbidden("You are not permitted to delete this image.")
        if image.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        for _ in range(5):
            has_data = image.store is not None and image.store != EXTERNAL_STORE
            target = (
                Status.PENDING_DELETE
                if self._limits.delayed_delete and has_data and image.status is not Status.SAVING
                else Status.DELETED
            )
            lifecycle.check_transition(image.status, target)
            if self._repo.mark_deleted(image.id, target, now(), expected_status=image.status):
                if target is Status.DELETED and has_data and image.location:
                    self._release(image.id, image.store or "", image.location)
                return
            # The status moved under us (an upload finished); decide again on the new state.
            image = self.get(principal, image_id)
            if image.deleted:
                raise NotFound(f"Image {image_id} not found.")
        raise Conflict("The image kept changing while it was being deleted; try again.")

    # -- helpers ------------------------------------------------------------------------------

    def _check_input(self, principal: Principal, data: ImageInput, upload: Upload | None) -> None:
        validate_input(data, self._limits.disk_formats, self._limits.container_formats)
        cap = self._limits.image_size_cap
        declared = data.fields.get("size")
        if (declared is not None and declared > cap) or (
            upload is not None and upload.length is not None and upload.length > cap
        ):
            raise Invalid(f"Denying attempt to upload image larger than {cap} bytes.")
        if data.fields.get("is_public") and not principal.is_admin:
            raise Forbidden("Only administrators may publicize images (set is_public to true).")
        if sum(x is not None for x in (data.location, data.copy_from)) + (upload is not None) > 1:
            raise Invalid("It's invalid to provide multiple image sources.")
        if upload is not None and not upload.content_type_ok:
            raise Invalid("Content-Type must be application/octet-stream")

    def _check_property_quota(self, count: int) -> None:
        quota = self._limits.image_property_quota
        if 0 <= quota < count:
            raise OverLimit(
                f"The limit has been exceeded on the number of allowed image properties. "
                f"Attempted: {count}, Maximum: {quota}"
            )

    def _check_external(self, data: ImageInput) -> int | None:
        url = data.location if data.location is not None else data.copy_from
        if url is None:
            return None
        self._external.validate(url)
        remote = self._external.size(url)
        declared = data.fields.get("size")
        if declared and remote and declared != remote:
            raise Conflict("Provided image size must match the stored image size.")
        return remote

    def _writable_store(self, name: str | None, upload: Upload | None) -> str:
        name = STORE_ALIASES.get(name, name) if name else self._default_store
        if name in READ_ONLY_STORES:
            if upload is not None:
                raise Gone(f"Store {name} is read-only: image data cannot be uploaded to it")
            return self._default_store
        if name not in self._stores:
            raise Invalid(f"Required store {name} is invalid")
        return name

    def _attach(
        self, image: Image, data: ImageInput, upload: Upload | None, store: str
    ) -> Image:
        """Attach the request's data source, if any, to a freshly written image."""
        if upload is not None:
            return self._receive(image, upload.chunks, store)
        if data.location is not None:
            active = self._repo.update(
                image.id,
                {"status": Status.ACTIVE, "store": EXTERNAL_STORE, "location": data.location,
                 "updated_at": now()},
                expected_status=Status.QUEUED,
            )
            if active is None:
                raise Conflict("Cannot set the location of an unqueued image")
            return active
        if data.copy_from is not None:
            self._background.submit(self._copy, image.id, data.copy_from, store)
        return image

    def _copy(self, image_id: str, url: str, store: str) -> None:
        image = self._repo.get(image_id)
        if image is None:
            return

        def remote_chunks() -> Iterator[bytes]:
            # Opened only once the image is claimed, so a source that fails at once still
            # goes through the upload's failure path and leaves the image killed.
            yield from self._external.open(url)

        try:
            self._receive(image, remote_chunks(), store)
        except GlimpseError as exc:
            log.warning("copy-from for image %s failed: %s", image_id, exc.message)
        except Exception:
            log.exception("copy-from for image %s failed", image_id)

    def _receive(
        self, image: Image, chunks: Iterable[bytes], store_name: str, claimed: bool = False
    ) -> Image:
        """Stream data into a store: claim (unless the image was created claimed), stream with
        no transaction open, then finish."""
        if not claimed:
            # Where the data goes is recorded before any byte is written: if the upload fails
            # and the store cannot be cleaned at once, purge_leftovers() finds it there later,
            # and so does the sweep after a server died mid-upload.
            update = self._repo.update(
                image.id, {"status": Status.SAVING, "store": store_name, "location": image.id,
                           "updated_at": now()},
                expected_status=Status.QUEUED,
            )
            if update is None:
                raise Conflict("Cannot upload to an unqueued image")
            image = update
        store = self._stores[store_name]
        limit, limit_error = self._upload_limit(image)
        expected = image.size or None
        stream = UploadStream(
            self.uploads.watch(image.id, chunks), limit=limit, limit_error=limit_error,
            expected_size=expected, hash_algo=self._limits.multihash_algorithm,
        )
        inspection = None if self._inspector is None else self._inspector.stage(
            stream, image.disk_format, image.container_format
        )
        try:
            if expected is not None and expected > limit:
                raise limit_error
            store.put(image.id, stream if inspection is None else inspection)
            if expected is not None and stream.size != expected:
                raise Invalid(f"Size of the uploaded data ({stream.size} bytes) does not match "
                              f"the declared size ({expected} bytes).")
            if image.checksum and image.checksum != stream.checksum:
                raise Invalid(f"Checksum of the uploaded data ({stream.checksum}) does not match "
                              f"the declared checksum ({image.checksum}).")
        except BaseException as exc:
            try:
                self._kill(image.id, exc)
            finally:
                self._release(image.id, store_name, image.id)
            raise
        finished = self._repo.update(
            image.id,
            {"status": Status.ACTIVE, "size": stream.size, "checksum": stream.checksum,
             "os_hash_algo": stream.hash_algo, "os_hash_value": stream.multihash,
             "updated_at": now(),
             **({} if inspection is None or inspection.virtual_size is None
                else {"virtual_size": inspection.virtual_size})},
            expected_status=Status.SAVING,
        )
        if finished is None:
            self._release(image.id, store_name, image.id)
            raise PreconditionFailed(
                f"Image {image.id} was deleted while its data was being uploaded."
            )
        return finished

    def recover_stale_uploads(self) -> list[str]:
        """Kill the images whose upload stopped beating (its server died) and delete whatever
        data they left. Safe to run from every API process at once."""
        before = now() - dt.timedelta(seconds=self._limits.stale_upload_timeout)
        recovered = []
        for image in self._repo.find_stale_uploads(before):
            if not self._mark_killed(image.id):
                continue  # it finished, or another process got there first
            if image.store in self._stores:
                self._release(image.id, image.store or "", image.location or image.id)
            log.warning("image %s: upload abandoned (no heartbeat since %s); killed",
                        image.id, image.updated_at)
            recovered.append(image.id)
        return recovered

    def _upload_limit(self, image: Image) -> tuple[int, OverLimit]:
        cap = self._limits.image_size_cap
        error = OverLimit(f"Denying attempt to upload image larger than {cap} bytes.")
        quota = self._limits.user_storage_quota
        if quota > 0:
            remaining = max(quota - self._repo.usage(image.owner, image.id), 0)
            if remaining < cap:
                return remaining, OverLimit(
                    f"Denying attempt to upload image because it exceeds the quota: "
                    f"the remaining storage quota is {remaining} bytes of {quota}."
                )
        return cap, error

    def purge_leftovers(self, limit: int = 100) -> int:
        """Delete the data that killed and deleted images left in a store that could not be
        reached at the time; returns how many images were cleaned."""
        cleaned = 0
        for image in self._repo.leftovers(sorted(self._stores), limit):
            if image.store and image.location and self._release(
                image.id, image.store, image.location
            ):
                cleaned += 1
        return cleaned

    def _release(self, image_id: str, store_name: str, location: str) -> bool:
        return release_data(self._repo, self._stores, image_id, store_name, location)

    def _mark_killed(self, image_id: str) -> bool:
        """saving -> killed, only if still saving."""
        return self._repo.set_fields(
            image_id, {"status": Status.KILLED, "updated_at": now()},
            expected_status=Status.SAVING,
        )

    def _kill(self, image_id: str, cause: BaseException) -> None:
        killed = self._mark_killed(image_id)
        if not killed and (current := self._repo.get(image_id)) and current.deleted:
            raise PreconditionFailed(
                f"Image {image_id} was deleted while its data was being uploaded."
            ) from cause


def _normalized(fields: dict[str, Any]) -> dict[str, Any]:
    """Null integers become 0 and flags become booleans, as the columns hold them."""
    out = dict(fields)
    for key in ("min_disk", "min_ram", "size"):
        if key in out and out[key] is None:
            out[key] = 0
    for key in ("is_public", "protected"):
        if key in out:
            out[key] = bool(out[key])
    return out


def release_data(
    repo: ImageRepository, stores: Mapping[str, Store], image_id: str, store_name: str,
    location: str,
) -> bool:
    """Delete an image's stored data, then forget where it was. A store that fails is logged,
    not raised: the record keeps the location and ImageService.purge_leftovers() retries."""
    try:
        stores[store_name].delete(location)
    except GlimpseError as exc:
        log.warning("could not delete the data of image %s from store %s (will retry): %s",
                    image_id, store_name, exc.message)
        return False
    repo.set_fields(image_id, {"store": None, "location": None})
    return True


def _new_id() -> str:
    return str(uuid.uuid4())

