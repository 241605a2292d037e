"""The two image APIs the benchmark speaks: Images v1 (glimpse) and Images v2 (glimpse and
Glance: one client for both, so they are driven by the same requests).

Each call checks the status code it gets; anything else raises BenchError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from rawclient import Conn, Response


class BenchError(Exception):
    """A failed check: the run stops with `BENCH FAILED: ...`."""


def expect(resp: Response, codes: tuple[int, ...], what: str) -> Response:
    if resp.status not in codes:
        raise BenchError(
            f"{what}: HTTP {resp.status} {resp.reason} (expected "
            f"{' or '.join(map(str, codes))}): {resp.body[:300]!r}"
        )
    return resp


def json_of(resp: Response, what: str) -> Any:
    try:
        return resp.json()
    except ValueError as exc:
        raise BenchError(f"{what}: answer is not JSON ({exc}): {resp.body[:200]!r}") from None


@dataclass
class ImageMeta:
    id: str
    status: str | None
    size: int | None
    checksum: str | None
    properties: dict[str, str]
    # The multihash (v2 shows it; v1 does not): algorithm name and hex digest.
    os_hash_algo: str | None = None
    os_hash_value: str | None = None


class ImageApi(Protocol):
    name: str
    shows_multihash: bool  # whether `meta` reports os_hash_algo / os_hash_value

    def create_queued(self, conn: Conn, name: str, props: dict[str, str]) -> str: ...

    def upload_new(
        self,
        conn: Conn,
        name: str,
        props: dict[str, str],
        *,
        body: bytes | None = None,
        file: str | None = None,
    ) -> ImageMeta:
        """Create an image with data; the answer's metadata when the API gives it."""
        ...

    def meta(self, conn: Conn, image_id: str) -> ImageMeta: ...

    def meta_request(self, image_id: str) -> tuple[str, str]:
        """The cheapest metadata request (method, path) for the request-rate scenario."""
        ...

    def data_path(self, image_id: str) -> str: ...

    def pages(self, conn: Conn, limit: int) -> Iterator[tuple[Response, list[ImageMeta]]]:
        """Every page of the full image list, following markers (v1) or `next` (v2)."""
        ...

    def delete(self, conn: Conn, image_id: str) -> None: ...


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


class ApiV1:
    """OpenStack Images API v1: metadata in x-image-meta-* headers, one-request uploads."""

    name = "v1"
    shows_multihash = False

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    @staticmethod
    def _meta_headers(name: str, props: dict[str, str]) -> dict[str, str]:
        headers = {
            "x-image-meta-name": name,
            "x-image-meta-disk_format": "raw",
            "x-image-meta-container_format": "bare",
        }
        headers.update({f"x-image-meta-property-{k}": v for k, v in props.items()})
        return headers

    @staticmethod
    def _from_json(doc: dict[str, Any]) -> ImageMeta:
        return ImageMeta(
            id=str(doc["id"]),
            status=doc.get("status"),
            size=_int_or_none(doc.get("size")),
            checksum=doc.get("checksum") or None,
            properties={k: str(v) for k, v in (doc.get("properties") or {}).items()},
        )

    def create_queued(self, conn: Conn, name: str, props: dict[str, str]) -> str:
        what = "v1 POST /v1/images (no data)"
        resp = expect(
            conn.request("POST", f"{self.p}/v1/images", self._meta_headers(name, props)),
            (201,),
            what,
        )
        return self._from_json(json_of(resp, what)["image"]).id

    def upload_new(
        self,
        conn: Conn,
        name: str,
        props: dict[str, str],
        *,
        body: bytes | None = None,
        file: str | None = None,
    ) -> ImageMeta:
        what = "v1 POST /v1/images with data"
        headers = self._meta_headers(name, props)
        headers["Content-Type"] = "application/octet-stream"
        resp = expect(
            conn.request("POST", f"{self.p}/v1/images", headers, body=body, file=file),
            (201,),
            what,
        )
        return self._from_json(json_of(resp, what)["image"])

    def meta(self, conn: Conn, image_id: str) -> ImageMeta:
        resp = expect(
            conn.request("HEAD", f"{self.p}/v1/images/{image_id}"), (200,), "v1 HEAD image"
        )
        h = resp.headers
        prefix = "x-image-meta-property-"
        return ImageMeta(
            id=h.get("x-image-meta-id", image_id),
            status=h.get("x-image-meta-status"),
            size=_int_or_none(h.get("x-image-meta-size")),
            checksum=h.get("x-image-meta-checksum") or None,
            properties={k[len(prefix) :]: v for k, v in h.items() if k.startswith(prefix)},
        )

    def meta_request(self, image_id: str) -> tuple[str, str]:
        return "HEAD", f"{self.p}/v1/images/{image_id}"

    def data_path(self, image_id: str) -> str:
        return f"{self.p}/v1/images/{image_id}"

    def pages(self, conn: Conn, limit: int) -> Iterator[tuple[Response, list[ImageMeta]]]:
        marker: str | None = None
        while True:
            query = f"limit={limit}" + (f"&marker={quote(marker)}" if marker else "")
            what = "v1 GET /v1/images/detail"
            resp = expect(conn.request("GET", f"{self.p}/v1/images/detail?{query}"), (200,), what)
            images = [self._from_json(d) for d in json_of(resp, what)["images"]]
            yield resp, images
            if len(images) < limit:
                return
            marker = images[-1].id

    def delete(self, conn: Conn, image_id: str) -> None:
        expect(
            conn.request("DELETE", f"{self.p}/v1/images/{image_id}"),
            (200, 204),
            "v1 DELETE image",
        )


class ApiV2:
    """Images API v2 (Glance's, and glimpse's second adapter): JSON create, then PUT .../file;
    GET for metadata."""

    name = "v2"
    shows_multihash = True
    JSON: ClassVar[dict[str, str]] = {"Content-Type": "application/json"}

    def __init__(self, prefix: str) -> None:
        self.p = prefix

    @staticmethod
    def _from_json(doc: dict[str, Any]) -> ImageMeta:
        return ImageMeta(
            id=str(doc["id"]),
            status=doc.get("status"),
            size=_int_or_none(doc.get("size")),
            checksum=doc.get("checksum") or None,
            properties={k: str(v) for k, v in doc.items() if isinstance(v, str)},
            os_hash_algo=doc.get("os_hash_algo"),
            os_hash_value=doc.get("os_hash_value"),
        )

    def create_queued(self, conn: Conn, name: str, props: dict[str, str]) -> str:
        doc: dict[str, str] = {"name": name, "disk_format": "raw", "container_format": "bare"}
        doc.update(props)
        what = "v2 POST /v2/images"
        resp = expect(
            conn.request("POST", f"{self.p}/v2/images", self.JSON, body=json.dumps(doc).encode()),
            (201,),
            what,
        )
        return str(json_of(resp, what)["id"])

    def upload_new(
        self,
        conn: Conn,
        name: str,
        props: dict[str, str],
        *,
        body: bytes | None = None,
        file: str | None = None,
    ) -> ImageMeta:
        image_id = self.create_queued(conn, name, props)
        expect(
            conn.request(
                "PUT",
                f"{self.p}/v2/images/{image_id}/file",
                {"Content-Type": "application/octet-stream"},
                body=body,
                file=file,
            ),
            (204,),
            "v2 PUT /v2/images/{id}/file",
        )
        return ImageMeta(image_id, None, None, None, {})  # the answer is empty: no metadata

    def meta(self, conn: Conn, image_id: str) -> ImageMeta:
        what = "v2 GET image"
        resp = expect(conn.request("GET", f"{self.p}/v2/images/{image_id}"), (200,), what)
        return self._from_json(json_of(resp, what))

    def meta_request(self, image_id: str) -> tuple[str, str]:
        return "GET", f"{self.p}/v2/images/{image_id}"  # Glance answers HEAD with 405

    def data_path(self, image_id: str) -> str:
        return f"{self.p}/v2/images/{image_id}/file"

    def pages(self, conn: Conn, limit: int) -> Iterator[tuple[Response, list[ImageMeta]]]:
        target = f"{self.p}/v2/images?limit={limit}"
        while True:
            what = "v2 GET /v2/images"
            resp = expect(conn.request("GET", target), (200,), what)
            doc = json_of(resp, what)
            images = [self._from_json(d) for d in doc["images"]]
            yield resp, images
            nxt = doc.get("next")
            if not nxt or not images:
                return
            # `next` is "/v2/images?marker=...&limit=..." (without the endpoint prefix).
            parts = urlsplit(nxt)
            query = dict(parse_qsl(parts.query))
            query.setdefault("limit", str(limit))
            target = f"{self.p}{parts.path}?{urlencode(query)}"

    def delete(self, conn: Conn, image_id: str) -> None:
        expect(conn.request("DELETE", f"{self.p}/v2/images/{image_id}"), (204,), "v2 DELETE image")


def make_api(version: str, prefix: str) -> ImageApi:
    if version == "v1":
        return ApiV1(prefix)
    if version == "v2":
        return ApiV2(prefix)
    raise ValueError(f"unknown API {version!r}")
