"""glance-download: an import whose data is another region's image, fetched from that region's
image service (docs/import.md).

The request names the remote image (``glance_image_id``), its region (``glance_region``) and the
catalog interface to use (``glance_service_interface``, public by default). When the import is
asked for, the region's ``image`` endpoint is looked up in the caller's Keystone catalog and
held to the external sources' network rules: an endpoint that leads inward is refused then
(400, as a web-download URL is). A region or interface the catalog does not have fails the
import's task instead, naming them, as Glance does (Tempest's
test_image_glance_download_import_bad_endpoint expects the 202). The import then fetches,
with the caller's token, the remote image's record (``GET /v2/images/{id}``: it must be
active) and its data (``GET /v2/images/{id}/file``, resumed with Range requests as
web-download's is), through the same upload stages as any import. The bytes received are
held to the remote's size and hash (its ``os_hash_value``, or its md5 ``checksum`` when its
algorithm is unknown here); the local image takes the remote's disk and container formats,
and the remote keys with the configured prefixes.

The token lives only in memory, for the import's run: it is never recorded in the task, never
logged, and never sent along a redirect. A restarted process cannot go on with it, which is
why an import whose process died is failed, as every import is.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from glimpse.domain.web_download import resumable
from glimpse.errors import GlimpseError, Invalid, NotFound, PreconditionFailed
from glimpse.streams import expected_hash
from glimpse.streams.expected_hash import ExpectedHash

GLANCE_DOWNLOAD = "glance-download"
# A remote image record is a few KiB; anything much larger is not one.
MAX_RECORD = 1 << 20
_TOKEN_HEADER = "X-Auth-Token"
# The disk formats and the container formats a service allows.
Formats = tuple[tuple[str, ...], tuple[str, ...]]


class EndpointCatalog(Protocol):
    """The caller's service catalog (Keystone's, read with the caller's token)."""

    def image_endpoint(self, token: str, region: str, interface: str) -> str | None:
        """The URL of the ``image`` service of ``region`` at ``interface``; None when the
        catalog has none. Unavailable when the catalog cannot be read."""


class AuthorizedSource(Protocol):
    """The external sources' HTTP client (glimpse.stores.http.HttpSource): requests held to
    the network rules, with headers of the caller's."""

    def check_address(self, url: str) -> None: ...

    def open(self, url: str, offset: int = 0, length: int | None = None, *,
             headers: Mapping[str, str] | None = None) -> Iterator[bytes]: ...


@dataclasses.dataclass(frozen=True)
class RemoteImage:
    """Where the image to import lives: its id, region and catalog interface."""

    image_id: str
    region: str
    interface: str = "public"

    def as_method(self) -> dict[str, str]:
        """The ``method`` object recorded in the task (Glance's keys, the default filled)."""
        return {"name": GLANCE_DOWNLOAD, "glance_image_id": self.image_id,
                "glance_region": self.region, "glance_service_interface": self.interface}


@dataclasses.dataclass(frozen=True)
class RemoteRecord:
    """What the import takes from the remote image's record."""

    size: int
    disk_format: str
    container_format: str
    properties: dict[str, str]
    # (algorithm, hex value) the bytes must hash to; None when the remote gave none.
    digest: tuple[str, str] | None


def parse_remote(method: Mapping[str, Any]) -> RemoteImage:
    """The glance-download keys of an import's ``method`` object, with their 400s."""
    region = method.get("glance_region")
    image_id = method.get("glance_image_id")
    interface = method.get("glance_service_interface", "public")
    if region is None:
        raise Invalid("'glance_region' needs to be set for glance-download import method")
    if (not isinstance(region, str) or not region.strip() or len(region) > 255
            or not region.isprintable()):
        raise Invalid("glance_region must be a region name (a non-empty string of printable "
                      "characters, at most 255).")
    if image_id is None:
        raise Invalid("'glance_image_id' needs to be set for glance-download import method")
    try:
        if not isinstance(image_id, str):
            raise ValueError
        canonical = str(uuid.UUID(image_id))
    except ValueError:
        raise Invalid("Remote image id does not look like a UUID: "
                      f"{str(image_id)[:64]!r}") from None
    # Any name is accepted (one the catalog does not have fails the task, as in Glance); it
    # is held to what an interface name can be, for the messages that quote it.
    if not isinstance(interface, str) or len(interface) > 64 or not interface.isprintable():
        raise Invalid("glance_service_interface must be a catalog interface name (public, "
                      "internal or admin).")
    return RemoteImage(canonical, region, str(interface))


def endpoint_in(catalog: Any, region: str, interface: str) -> str | None:
    """The ``image`` endpoint of ``region`` at ``interface`` in a Keystone v3 catalog
    (``GET /v3/auth/catalog``'s ``catalog`` list); regions compare without case, as Glance
    compares them."""
    if not isinstance(catalog, list):
        return None
    wanted = region.lower()
    for service in catalog:
        if not isinstance(service, dict) or service.get("type") != "image":
            continue
        for endpoint in service.get("endpoints") or ():
            if not isinstance(endpoint, dict) or endpoint.get("interface") != interface:
                continue
            names = {str(endpoint.get(k, "")).lower() for k in ("region_id", "region")}
            url = endpoint.get("url")
            if wanted in names and isinstance(url, str) and url:
                return url
    return None


def read_record(data: Any, remote: RemoteImage, prefixes: tuple[str, ...],
                formats: Formats | None = None) -> RemoteRecord:
    """The remote image's record, checked: active, sized, with both formats (among
    ``formats`` when given: those this service allows)."""
    if not isinstance(data, dict):
        raise Invalid(f"The image service of region {remote.region} did not answer image "
                      f"{remote.image_id} with an image record.")
    status = data.get("status")
    if status != "active":
        raise PreconditionFailed(f"Remote image {remote.image_id} in region {remote.region} "
                                 f"is {str(status)[:32]}: only an active image can be "
                                 "imported.")
    size = data.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise Invalid(f"Size attribute of remote image {remote.image_id} could not be "
                      "determined.")
    given = {k: data.get(k) for k in ("disk_format", "container_format")}
    missing = [k for k, v in given.items() if not isinstance(v, str) or not v]
    if missing:
        raise Invalid(f"Remote image {remote.image_id} has no {missing[0]}.")
    for (key, value), allowed in zip(given.items(), formats or (), strict=False):
        if value not in allowed:
            raise Invalid(f"Remote image {remote.image_id} has {key} {str(value)[:32]!r}, "
                          f"which is not allowed here (allowed: {', '.join(allowed)}).")
    properties = {key: value for key, value in data.items()
                  if isinstance(key, str) and isinstance(value, str)
                  and any(key.startswith(prefix) for prefix in prefixes)}
    digest: tuple[str, str] | None = None
    algo, value = data.get("os_hash_algo"), data.get("os_hash_value")
    if (isinstance(algo, str) and isinstance(value, str) and value
            and algo in hashlib.algorithms_guaranteed):
        digest = (algo, value.lower())
    elif isinstance(data.get("checksum"), str) and data["checksum"]:
        digest = ("md5", str(data["checksum"]).lower())
    return RemoteRecord(size, str(given["disk_format"]), str(given["container_format"]),
                        properties, digest)


class _Authorized:
    """An ExternalSource for ``resumable``: every request with the token, the size the
    remote's record gave (the image service answers no HEAD for data)."""

    def __init__(self, source: AuthorizedSource, token: str, size: int) -> None:
        self._source = source
        self._headers = {_TOKEN_HEADER: token}
        self._size = size

    def validate(self, url: str) -> None:
        self._source.check_address(url)

    def size(self, url: str) -> int | None:
        return self._size

    def open(self, url: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self._source.open(url, offset, length, headers=self._headers)


def verified(chunks: Iterator[bytes], record: RemoteRecord, remote: RemoteImage
             ) -> Iterator[bytes]:
    """The bytes, then a check that they are the remote image's: its size, then its hash (an
    error at the end of the stream fails whatever consumes it, before the image goes active).
    """
    sized = _sized(chunks, record, remote)
    if record.digest is None:
        return sized
    return expected_hash.verified(sized, ExpectedHash(*record.digest))


def _sized(chunks: Iterator[bytes], record: RemoteRecord, remote: RemoteImage
           ) -> Iterator[bytes]:
    received = 0
    for chunk in chunks:
        received += len(chunk)
        yield chunk
    if received != record.size:
        raise Invalid(f"Remote image {remote.image_id} is {record.size} bytes; {received} "
                      "were received.")


class GlanceDownload:
    """glance-download's two halves: the checks when the import is asked for (``endpoint``)
    and the remote image's record and bytes when it runs (``fetch``)."""

    def __init__(self, catalog: EndpointCatalog, source: AuthorizedSource, *,
                 retries: int = 3, prefixes: tuple[str, ...] = (),
                 formats: Formats | None = None) -> None:
        """``prefixes``: the remote keys copied onto the local image; ``formats``: the disk
        and container formats allowed here (a remote image in another is refused)."""
        self._catalog = catalog
        self._source = source
        self._retries = retries
        self._prefixes = prefixes
        self._formats = formats

    def endpoint(self, token: str | None, remote: RemoteImage) -> str:
        """The remote image service's base URL for this caller; Invalid naming the problem:
        no token, no such endpoint in the caller's catalog, or an endpoint the network rules
        refuse (code NOT_ALLOWED)."""
        if not token:
            raise Invalid("glance-download needs the caller's Keystone token (X-Auth-Token).")
        url = self._catalog.image_endpoint(token, remote.region, remote.interface)
        if url is None:
            raise Invalid(f"No image service endpoint for region {remote.region!r} "
                          f"(interface {remote.interface!r}) in your Keystone catalog.")
        base = url.rstrip("/")
        self._source.check_address(f"{base}/v2/images/{remote.image_id}")
        return base

    def fetch(self, base: str, token: str, remote: RemoteImage
              ) -> tuple[Iterator[bytes], RemoteRecord]:
        """The remote image's record (checked) and its bytes (checked at their end)."""
        record = read_record(self._record(base, token, remote), remote, self._prefixes,
                             self._formats)
        data_url = f"{base}/v2/images/{remote.image_id}/file"
        chunks = resumable(_Authorized(self._source, token, record.size), data_url,
                           self._retries, GLANCE_DOWNLOAD)
        return verified(chunks, record, remote), record

    def _record(self, base: str, token: str, remote: RemoteImage) -> Any:
        url = f"{base}/v2/images/{remote.image_id}"
        try:
            body = bytearray()
            for chunk in self._source.open(url, headers={_TOKEN_HEADER: token}):
                body += chunk
                if len(body) > MAX_RECORD:
                    raise Invalid("the answer is too large for an image record")
        except NotFound:
            raise NotFound(f"Remote image {remote.image_id} was not found in region "
                           f"{remote.region}.") from None
        except GlimpseError as exc:
            raise Invalid(f"Fetching remote image {remote.image_id} from region "
                            f"{remote.region} failed: {exc.message}") from None
        try:
            return json.loads(bytes(body))
        except ValueError:
            raise Invalid(f"The image service of region {remote.region} answered image "
                          f"{remote.image_id} with a body that is not JSON.") from None
