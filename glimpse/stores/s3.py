"""The S3 store (boto3).

Uploads stream as a multipart upload. Parts start at ``part_size`` and double every 1,000 parts
(capped at S3's 5 GiB), so the 10,000 parts S3 allows reach its 5 TiB object limit while small
images keep small buffers. An image that fits in one part is a single PUT.

Up to ``upload_concurrency`` parts are sent at once, each from a thread of the upload's own
pool, while a reader thread fills the next one from the stream: receiving overlaps sending, and
one part's round trip does not stall the next. An upload so holds at most
(upload_concurrency + 1) parts in memory, each as the chunks it was received in (never joined
into one buffer: hashing and sending read the chunks as they are).
A failed part, a failed read of the stream (the client went away) or any other error stops the
upload at once, even while the read waits for the client: parts still in flight are waited
for, then the multipart upload is aborted, so no parts stay behind. A read still waiting is
left to end with its stream (a request body ends when the request is answered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO, NoReturn, cast

import boto3
import botocore.config
import botocore.exceptions

from glimpse.errors import Invalid, NotFound, Unavailable
from glimpse.stores.driver import StoreDriver
from glimpse.stores.ranged import answers_range, range_header
from glimpse.stores.segments import PieceFile, Pieces

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)
_READ_CHUNK = 1 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
_DOUBLING_EVERY = 1_000
_NOTHING = PieceFile([])


@dataclasses.dataclass(frozen=True)
class S3Options:
    bucket: str
    access_key: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    endpoint_url: str = ""  # empty: the AWS endpoint of `region`
    region: str = "us-east-1"
    addressing_style: str = "path"  # "path", "virtual" or "auto"
    part_size: int = 16 << 20
    create_bucket: bool = True
    timeout: float = 60.0
    retries: int = 3
    max_connections: int = 20
    # Parts sent at once per upload; the memory bound is (this + 1) x the part size.
    upload_concurrency: int = 3

    def __post_init__(self) -> None:
        # ValueErrors: the option parser names the store in front of them.
        if self.addressing_style not in ("path", "virtual", "auto"):
            raise ValueError("addressing_style must be path, virtual or auto")
        if not 5 << 20 <= self.part_size <= MAX_PART:
            raise ValueError("part_size must be between 5MB and 5GB")
        if not 1 <= self.upload_concurrency <= 64:
            raise ValueError("upload_concurrency must be between 1 and 64")


def create(name: str, options: S3Options, data_dir: Path) -> S3Store:
    return S3Store(name, options)


def part_size(first: int, number: int) -> int:
    """The size of part ``number`` (0-based) of an upload whose first part is ``first``."""
    return min(first << (number // _DOUBLING_EVERY), MAX_PART)


class S3Store:
    writable = True

    def __init__(self, name: str, options: S3Options) -> None:
        self.name = name
        self.options = options
        config = botocore.config.Config(
            s3={"addressing_style": options.addressing_style},  # type: ignore[arg-type]
            connect_timeout=options.timeout,
            read_timeout=options.timeout,
            retries={"total_max_attempts": options.retries + 1, "mode": "standard"},
            max_pool_connections=options.max_connections,
            # The upload stream already hashes every byte (MD5 and the multihash); a third,
            # optional checksum per part would only cost CPU.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # boto3 clients are thread-safe: one per store serves every worker thread.
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=options.endpoint_url or None,
            region_name=options.region,
            aws_access_key_id=options.access_key,
            aws_secret_access_key=options.secret_key,
            config=config,
        )
        self._bucket_ready = not options.create_bucket

    # -- the Store interface ----------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        bucket = self.options.bucket
        self._ensure_bucket()
        pieces = Pieces(chunks)
        first = pieces.read_piece(part_size(self.options.part_size, 0))
        if pieces.exhausted:
            self._call(lambda: self._client.put_object(
                Bucket=bucket, Key=key, Body=cast("IO[bytes]", first)))
            return first.size
        upload_id = self._call(
            lambda: self._client.create_multipart_upload(Bucket=bucket, Key=key)
        )["UploadId"]
        concurrency = self.options.upload_concurrency
        sending: list[Future[str]] = []  # each part's ETag, in part order
        running: set[Future[str]] = set()
        pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"s3-{self.name}")
        # The stream is read on a thread of its own, so that a part failing while the client
        # sends nothing (it may wait for an answer) is answered at once.
        reader = ThreadPoolExecutor(1, thread_name_prefix=f"s3-{self.name}-read")
        written = 0
        try:
            body, first = first, _NOTHING
            while body:
                number = len(sending) + 1
                if number > MAX_PARTS:
                    raise Invalid("Image is larger than an S3 object may be")
                _wait_for_parts(running, lambda: len(running) < concurrency)
                part = pool.submit(self._upload_part, key, upload_id, number, body)
                sending.append(part)
                running.add(part)
                written += body.size
                body = _NOTHING  # the pool holds the part now; the next one is read meanwhile
                reading = reader.submit(
                    pieces.read_piece, part_size(self.options.part_size, number))
                _wait_for_parts(running, reading.done, reading)
                body = reading.result()
            parts: list[CompletedPartTypeDef] = [
                {"ETag": etag.result(), "PartNumber": number}
                for number, etag in enumerate(sending, 1)
            ]
            self._call(lambda: self._client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}))
        except BaseException:
            # A read still waiting for the client ends with the request; nothing waits for it.
            reader.shutdown(wait=False, cancel_futures=True)
            # A part still being sent could land after the abort and stay behind: wait for it.
            pool.shutdown(wait=True, cancel_futures=True)
            self._abort(key, upload_id)
            raise
        # Every part and read has finished: the pools are idle.
        pool.shutdown()
        reader.shutdown()
        return written

    def _upload_part(self, key: str, upload_id: str, number: int, body: PieceFile) -> str:
        answer = self._call(lambda: self._client.upload_part(
            Bucket=self.options.bucket, Key=key, UploadId=upload_id, PartNumber=number,
            Body=cast("IO[bytes]", body)))
        return str(answer["ETag"])

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        wanted = range_header(offset, length)
        extra: dict[str, Any] = {"Range": wanted} if wanted else {}
        answer = self._call(
            lambda: self._client.get_object(Bucket=self.options.bucket, Key=key, **extra),
            missing=f"Image data {key} not found in store {self.name}",
        )
        if wanted and not answers_range(answer.get("ContentRange"), offset, length):
            answer["Body"].close()
            raise Unavailable(f"Store {self.name} did not answer the range {wanted}")
        return self._read(answer["Body"])

    def _read(self, body: Any) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(_READ_CHUNK)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            # The connection broke mid-object: the caller must not take this as the end.
            raise Unavailable(f"Store {self.name} broke off while sending image data") from exc
        finally:
            body.close()

    def delete(self, key: str) -> None:
        bucket = self.options.bucket
        with contextlib.suppress(NotFound):
            self._call(lambda: self._client.delete_object(Bucket=bucket, Key=key), missing="")
        # Multipart uploads of this key that a failure could not abort (the store was down).
        with contextlib.suppress(NotFound):
            listing = self._call(
                lambda: self._client.list_multipart_uploads(Bucket=bucket, Prefix=key),
                missing="",
            )
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == key and "UploadId" in upload:
                    self._abort(key, upload["UploadId"], quiet=False)

    def size(self, key: str) -> int:
        answer = self._call(
            lambda: self._client.head_object(Bucket=self.options.bucket, Key=key),
            missing=f"Image data {key} not found in store {self.name}",
        )
        return int(answer["ContentLength"])

    def open_file(self, key: str) -> BinaryIO | None:
        return None

    def object_keys(self) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.options.bucket):
                for entry in page.get("Contents", []):
                    yield entry["Key"]
        except botocore.exceptions.ClientError as exc:
            if _status(exc) == 404:
                return
            _raise_unavailable(self.name, exc)

    # -- helpers ----------------------------------------------------------------------------

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        try:
            self._client.head_bucket(Bucket=self.options.bucket)
        except botocore.exceptions.ClientError as exc:
            if _status(exc) != 404:
                _raise_unavailable(self.name, exc)
            with contextlib.suppress(self._client.exceptions.BucketAlreadyOwnedByYou):
                self._call(lambda: self._client.create_bucket(Bucket=self.options.bucket))
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise Unavailable(f"Store {self.name} is unreachable") from exc
        self._bucket_ready = True

    def _abort(self, key: str, upload_id: str, quiet: bool = True) -> None:
        try:
            self._call(lambda: self._client.abort_multipart_upload(
                Bucket=self.options.bucket, Key=key, UploadId=upload_id), missing="")
        except NotFound:
            pass
        except Unavailable as exc:
            if not quiet:
                raise
            # Deleting the image again (the reaper does) finds and aborts the upload.
            log.warning("store %s: could not abort the upload of %s: %s",
                        self.name, key, exc.message)

    def _call(self, fn: Any, missing: str | None = None) -> Any:
        """Run one boto3 call; its failures become glimpse errors that name the store and
        the HTTP status, never a credential."""
        try:
            return fn()
        except botocore.exceptions.ClientError as exc:
            if _status(exc) == 404 and missing is not None:
                raise NotFound(missing) from None
            _raise_unavailable(self.name, exc)
        except (botocore.exceptions.BotoCoreError, OSError) as exc:
            raise Unavailable(f"Store {self.name} is unreachable") from exc


def _wait_for_parts(running: set[Future[str]], until: Callable[[], bool],
                    reading: Future[PieceFile] | None = None) -> None:
    """Block until ``until()`` holds, forgetting the parts that finish meanwhile; the first
    part that failed raises its error at once (also while ``reading`` is still waiting)."""
    while True:
        finished = {part for part in running if part.done()}
        running -= finished
        for part in finished:
            part.result()
        if until():
            return
        waiting: list[Future[Any]] = [*running]
        if reading is not None:
            waiting.append(reading)
        wait(waiting, return_when=FIRST_COMPLETED)


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _raise_unavailable(store: str, exc: botocore.exceptions.ClientError) -> NoReturn:
    code = exc.response.get("Error", {}).get("Code", "")
    raise Unavailable(f"Store {store} failed (HTTP {_status(exc)} {code})") from None


DRIVER = StoreDriver(S3Options, create)
