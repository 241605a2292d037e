"""The OpenStack Swift store (python-swiftclient).

An image is written as segments ``<key>/<n>`` in a segments container, then a static large
object manifest named ``<key>`` ties them together, so images beyond Swift's 5 GiB object limit
work and every image reads back as one object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

import swiftclient.client as swift_client
from keystoneauth1 import exceptions as ks_exceptions
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3 as ks_v3
from swiftclient.exceptions import ClientException

from glimpse.errors import GlimpseError, NotFound, Unavailable
from glimpse.stores.driver import StoreDriver
from glimpse.stores.ranged import answers_range, range_header
from glimpse.stores.readahead import read_ahead
from glimpse.stores.segments import Pieces

log = logging.getLogger(__name__)
T = TypeVar("T")
_READ_CHUNK = 1 << 20
# swiftclient logs failed requests as curl commands and keeps the first characters of tokens
# and keys in them; glimpse logs must hold none.
swift_client.logger_settings["reveal_sensitive_prefix"] = 0


@dataclasses.dataclass(frozen=True)
class SwiftOptions:
    auth_url: str
    user: str
    key: str = dataclasses.field(repr=False)
    auth_version: str = "1"  # "1" (tempauth, swauth) or "3" (Keystone)
    project_name: str = ""
    project_domain_name: str = "Default"
    user_domain_name: str = "Default"
    region_name: str = ""
    container: str = "glimpse"
    # "single": every image in `container`; "prefix": one container per first characters of
    # the image id (`<container>_<prefix>`), to spread a large store over many containers.
    container_layout: str = "single"
    prefix_length: int = 2
    segment_size: int = 1 << 30
    timeout: float = 60.0
    # Requests swiftclient may repeat (with backoff); a streamed segment upload never is.
    retries: int = 3
    # Chunks read ahead of the segment PUT on a thread of their own (0: none, read in turn).
    read_ahead: int = 4

    def __post_init__(self) -> None:
        # ValueErrors: the option parser names the store in front of them.
        if self.auth_version not in ("1", "3"):
            raise ValueError("auth_version must be 1 or 3")
        if self.container_layout not in ("single", "prefix"):
            raise ValueError("container_layout must be single or prefix")
        if not 1 <= self.prefix_length <= 32:
            raise ValueError("prefix_length must be between 1 and 32")
        if not 1 << 20 <= self.segment_size <= 5 << 30:
            raise ValueError("segment_size must be between 1MB and 5GB")
        if not 0 <= self.read_ahead <= 64:
            raise ValueError("read_ahead must be between 0 and 64")


def create(name: str, options: SwiftOptions, data_dir: Path) -> SwiftStore:
    return SwiftStore(name, options)


class SwiftStore:
    writable = True

    def __init__(self, name: str, options: SwiftOptions) -> None:
        self.name = name
        self.options = options
        # A swiftclient Connection is not thread-safe: one per worker thread, each keeping its
        # token and its pooled HTTP connection.
        self._local = threading.local()
        self._known_containers: set[str] = set()
        # Keystone: one keystoneauth session for all threads, holding the store's token. On a
        # 401 from Swift, swiftclient invalidates it and asks it for a new one.
        self._keystone: ks_session.Session | None = None
        if options.auth_version == "3":
            self._keystone = ks_session.Session(auth=ks_v3.Password(
                auth_url=options.auth_url, username=options.user, password=options.key,
                project_name=options.project_name or None,
                project_domain_name=options.project_domain_name,
                user_domain_name=options.user_domain_name,
            ), timeout=options.timeout)

    # -- the Store interface ----------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        container = self._container(key)
        segments_container = container + "_segments"
        self._ensure_containers(container, segments_container)
        ahead = read_ahead(chunks, self.options.read_ahead) if self.options.read_ahead else None
        pieces = Pieces(chunks if ahead is None else ahead)
        manifest: list[dict[str, Any]] = []
        written = 0
        try:
            if pieces.exhausted:
                self._call(lambda c: c.put_object(container, key, b""))
                return 0
            while not pieces.exhausted:
                # swiftclient answers a 401 by authenticating again and repeating the request,
                # which a streamed segment cannot be: a cheap request first renews a token that
                # expired or was revoked (Keystone) since the last call.
                self._call(lambda c: c.head_container(segments_container))
                name = f"{key}/{len(manifest):08d}"
                counted = _Counted(pieces.next_piece(self.options.segment_size))
                etag = self._call(
                    lambda c, name=name, body=counted: _fresh(c).put_object(
                        segments_container, name, body),  # type: ignore[misc]
                )
                manifest.append({"path": f"/{segments_container}/{name}", "etag": etag,
                                 "size_bytes": counted.size})
                written += counted.size
            self._call(lambda c: c.put_object(
                container, key, _manifest_json(manifest),
                query_string="multipart-manifest=put"))
        except BaseException:
            if ahead is not None:
                ahead.close()  # stop reading ahead before cleaning up
            self._delete_segments(segments_container, key, len(manifest) + 1)
            raise
        return written

    def open(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        wanted = range_header(offset, length)
        # Swift answers a range of a static large object from the segments that hold it.
        answer, body = self._call(lambda c: c.get_object(
            self._container(key), key, resp_chunk_size=_READ_CHUNK,
            headers={"Range": wanted} if wanted else None),
            missing=f"Image data {key} not found in store {self.name}")
        if wanted and not answers_range(answer.get("content-range"), offset, length):
            _close(body)
            raise Unavailable(f"Store {self.name} did not answer the range {wanted}")
        return self._read(body)

    def _read(self, body: Any) -> Iterator[bytes]:
        try:
            yield from body
        except ClientException as exc:
            _raise_unavailable(self.name, exc)
        except OSError as exc:
            # The connection broke mid-object: the caller must not take this as the end.
            raise Unavailable(f"Store {self.name} broke off while sending image data") from exc
        finally:
            _close(body)

    def delete(self, key: str) -> None:
        container = self._container(key)
        # Deleting the manifest with multipart-manifest=delete removes its segments too; the
        # listing then finds segments of an upload that never got its manifest, and those a
        # manifest delete missed (Swift reports them in the body of a 200, which swiftclient
        # does not read).
        with contextlib.suppress(NotFound):
            self._call(lambda c: c.delete_object(
                container, key, query_string="multipart-manifest=delete"), missing="")
        self._delete_segments(container + "_segments", key, None)

    def size(self, key: str) -> int:
        headers = self._call(lambda c: c.head_object(self._container(key), key),
                             missing=f"Image data {key} not found in store {self.name}")
        return int(headers["content-length"])

    def open_file(self, key: str) -> BinaryIO | None:
        return None

    def object_keys(self) -> Iterator[str]:
        if self.options.container_layout == "prefix":
            _, containers = self._call(lambda c: c.get_account(
                prefix=f"{self.options.container}_", full_listing=True))
            names = [c["name"] for c in containers if not c["name"].endswith("_segments")]
        else:
            names = [self.options.container]
        for container in names:
            try:
                _, listing = self._call(lambda c, container=container: c.get_container(  # type: ignore[misc]
                    container, full_listing=True), missing="")
            except NotFound:
                continue
            for entry in listing:
                yield entry["name"]

    # -- helpers ----------------------------------------------------------------------------

    def _container(self, key: str) -> str:
        if self.options.container_layout == "prefix":
            return f"{self.options.container}_{key[: self.options.prefix_length]}"
        return self.options.container

    def _ensure_containers(self, *names: str) -> None:
        for name in names:
            if name not in self._known_containers:
                self._call(lambda c, name=name: c.put_container(name))  # type: ignore[misc]
                self._known_containers.add(name)

    def _delete_segments(self, container: str, key: str, count: int | None) -> None:
        """Remove the segments of ``key``: the first ``count`` by name when known (a failed
        upload), else whatever a listing finds."""
        if count is None:
            try:
                _, listing = self._call(lambda c: c.get_container(
                    container, prefix=f"{key}/", full_listing=True), missing="")
            except NotFound:
                return
            names = [entry["name"] for entry in listing]
        else:
            names = [f"{key}/{n:08d}" for n in range(count)]
        for name in names:
            try:
                self._call(lambda c, name=name: c.delete_object(  # type: ignore[misc]
                    container, name), missing="")
            except NotFound:
                continue
            except GlimpseError as exc:
                # Best effort while failing: deleting the image again (the reaper does) lists
                # and removes what is left.
                log.warning("store %s: could not remove segment of %s: %s",
                            self.name, key, exc.message)
                return

    def _connection(self) -> swift_client.Connection:
        conn: swift_client.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            o = self.options
            retry = {"retries": o.retries, "timeout": o.timeout, "starting_backoff": 0.5,
                     "max_backoff": 4}
            if self._keystone is not None:
                conn = swift_client.Connection(
                    session=self._keystone,
                    os_options={"region_name": o.region_name or None}, **retry)
            else:
                conn = swift_client.Connection(
                    authurl=o.auth_url, user=o.user, key=o.key, auth_version=o.auth_version,
                    **retry)
            self._local.conn = conn
        return conn

    def _call(self, fn: Callable[[swift_client.Connection], T],
              missing: str | None = None) -> T:
        """Run one swiftclient call; its failures become glimpse errors that name the store
        and the HTTP status, never a credential or a URL with a token."""
        try:
            return fn(self._connection())
        except ClientException as exc:
            if exc.http_status == 404 and missing is not None:
                raise NotFound(missing) from None
            _raise_unavailable(self.name, exc)
        except ks_exceptions.ClientException as exc:
            raise Unavailable(f"Store {self.name} failed ({_keystone_failure(exc)})") from None
        except OSError as exc:
            # A broken connection leaves the pooled one unusable: start afresh next time.
            self._local.conn = None
            raise Unavailable(f"Store {self.name} is unreachable") from exc


def _fresh(conn: swift_client.Connection) -> swift_client.Connection:
    """The connection with a new HTTP connection: a streamed segment cannot be sent twice, so
    it must not go out on a pooled connection the server may have closed while idle (swiftclient
    could not retry it). One TCP connect per segment costs nothing next to a segment."""
    conn.close()
    return conn


class _Counted:
    """An iterable of chunks that counts the bytes it hands out."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.size += len(chunk)
            yield chunk


def _close(body: Any) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


def _raise_unavailable(store: str, exc: ClientException) -> NoReturn:
    status = f"HTTP {exc.http_status} {exc.http_reason}" if exc.http_status else "no answer"
    raise Unavailable(f"Store {store} failed ({status})") from None


def _keystone_failure(exc: ks_exceptions.ClientException) -> str:
    """What went wrong with Keystone, in words that hold no credential, token or URL."""
    if isinstance(exc, ks_exceptions.Unauthorized):
        return "Keystone refused the store's credentials"
    if isinstance(exc, ks_exceptions.ConnectionError):
        return "Keystone is unreachable"
    if isinstance(exc, ks_exceptions.CatalogException):
        return "no object-store endpoint in the Keystone catalog for this region"
    status = getattr(exc, "http_status", None)
    return f"Keystone answered HTTP {status}" if status else "Keystone authentication failed"


def _manifest_json(segments: list[dict[str, Any]]) -> bytes:
    return json.dumps(segments).encode()


DRIVER = StoreDriver(SwiftOptions, create)
