"""The v2 handlers: parse the wire form, call one service method, render."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp

from glimpse.api.expected_hash_header import V2_HEADER, parse_expected_hash
from glimpse.api.http import (
    Header,
    RequestContext,
    data_response,
    empty_response,
    in_thread,
    json_response,
    json_text_response,
    read_json,
)
from glimpse.api.ranges import RequestedRange
from glimpse.api.v2.body import parse_create, parse_location
from glimpse.api.v2.images_json import (
    MEMBERS_SCHEMA,
    add_location_keys,
    image_json,
    location_json,
    member_json,
)
from glimpse.api.v2.images_text import image_text, images_page_text
from glimpse.api.v2.json_input import load_json
from glimpse.api.v2.patch import parse_patch, patch_draft
from glimpse.api.v2.query import decode_query, page_links, parse_list_query
from glimpse.api.v2.schemas import ImageSchemas
from glimpse.api.v2.store_handlers import StoreHandlers, add_stores_key, store_ids_header
from glimpse.api.v2.upload_body import declared_size, exactly
from glimpse.domain.data import Upload
from glimpse.domain.images import NO_DATA_YET, ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.locations import shown_locations
from glimpse.domain.members import MemberService
from glimpse.domain.model import AddTag, Command, DataSource, Image, Principal, RemoveTag
from glimpse.domain.store_choice import StoreCatalog
from glimpse.errors import Invalid, NotFound, UnsupportedMediaType

Handler = Callable[["Call"], Awaitable[Response | ASGIApp]]
IMAGES_SCHEMA = "/v2/schemas/images"


@dataclasses.dataclass
class Call(RequestContext):
    """One v2 request, as the handlers see it."""

    def refuse_body(self) -> None:
        """GET, DELETE, tag and action requests carry no body (spec §2.11)."""
        headers = self.request.headers
        length = headers.get("content-length", "")
        if "transfer-encoding" in headers or (length.strip() not in ("", "0")):
            raise Invalid("A body is not expected with this request.")

    async def json(self) -> Any:
        """The body as JSON, strictly (duplicate keys, NaN, deep nesting, non-UTF-8: 400)."""
        return await read_json(self.request, load_json)

    def query(self) -> list[tuple[str, str]]:
        return decode_query(self.request.scope.get("query_string", b""))


class V2Handlers:
    def __init__(
        self,
        images: ImageService,
        members: MemberService,
        default_limit: int,
        max_limit: int,
        inline_reads: bool = False,
        *,
        schemas: ImageSchemas,
        show_locations: bool = False,
        show_direct_url: bool = False,
        stores: StoreHandlers | None = None,
        import_methods: tuple[str, ...] = (),
    ) -> None:
        """``inline_reads``: as in V1Handlers, single-image reads on the event loop where the
        database cannot stall (SQLite in WAL mode). ``show_locations`` and
        ``show_direct_url``: the operator's show_multiple_locations (which also lets owners
        change ``/locations`` with PATCH) and show_image_direct_url, both off by default
        (docs/v2-choices.md, "Legacy locations and direct_url")."""
        self.images = images
        self.members = members
        self.default_limit = default_limit
        self.max_limit = max_limit
        self.inline_reads = inline_reads
        self.schemas = schemas
        self.show_locations = show_locations
        self.show_direct_url = show_direct_url
        # Multi-store (store_handlers.py); without a catalog, one store and none of it.
        self.stores = stores
        self.catalog: StoreCatalog | None = stores.catalog if stores is not None else None
        # A create's answer names the import methods (2.6; openstacksdk's use_import reads it).
        self.created_headers: list[Header] = (
            [(b"openstack-image-import-methods", ",".join(import_methods).encode())]
            if import_methods else [])

    # -- images -------------------------------------------------------------------------------

    async def create(self, call: Call) -> Response:
        data = parse_create(await call.json(), call.principal, self.schemas)
        image = await in_thread(self.images.create, call.principal, data, None,
                                FailureRule.REQUEUE)
        location = f"{call.base_url_of(call.request)}/v2/images/{image.id}"
        headers = [(b"location", location.encode()), *self.created_headers]
        if self.catalog is not None:
            headers += store_ids_header(self.catalog)
        return json_response(self._render(image, call.principal), 201, headers)

    async def show(self, call: Call) -> Response:
        call.refuse_body()
        if self.inline_reads:
            image = self.images.get(call.principal, call.params["image_id"])
        else:
            image = await in_thread(self.images.get, call.principal, call.params["image_id"])
        return json_response(self._render(image, call.principal))

    async def list_images(self, call: Call) -> Response:
        call.refuse_body()
        params = call.query()
        request = parse_list_query(params, self.default_limit, self.max_limit)
        request.query.with_locations = self.show_locations or self.show_direct_url or (
            self.catalog is not None and self.catalog.multi_store)
        page = await in_thread(self.images.list_images, call.principal, request.query,
                               request.marker)
        first, following = page_links(params, page, request.query.limit)
        if not self._adds_keys():
            # The usual page, written as JSON text directly (images_text.py).
            null_properties = self.schemas.null_properties
            return json_text_response(images_page_text(
                [image_text(image, null_properties) for image in page], first, IMAGES_SCHEMA,
                following))
        document: dict[str, Any] = {
            "images": [self._render(image, call.principal) for image in page],
            "first": first,
            "schema": IMAGES_SCHEMA,
        }
        if following is not None:
            document["next"] = following
        return json_response(document)

    async def update(self, call: Call) -> Response:
        content_type = call.header("content-type")
        patch_draft(content_type)  # 415 whatever the body holds
        commands = parse_patch(await call.json(), content_type, call.principal, self.schemas,
                               locations=self.show_locations)
        image = await in_thread(functools.partial(
            self.images.update, call.principal, call.params["image_id"], commands,
            on_failure=FailureRule.REQUEUE,
        ))
        return json_response(self._render(image, call.principal))

    async def delete(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.images.delete, call.principal, call.params["image_id"])
        return empty_response(204)

    # -- data ---------------------------------------------------------------------------------

    async def upload(self, call: Call) -> Response:
        if not call.body_type_ok():
            raise UnsupportedMediaType("The Content-Type of image data must be "
                                       "application/octet-stream.")
        declared = declared_size(call.header("x-openstack-image-size"))
        expected = parse_expected_hash(call.header(V2_HEADER), V2_HEADER)
        upload = call.upload() or Upload(chunks=iter(()), length=0)
        upload = dataclasses.replace(upload, expected_hash=expected)
        if declared is not None:
            if upload.length is not None and upload.length != declared:
                # Known before any byte is read: the image never leaves queued.
                raise Invalid(f"The Content-Length ({upload.length}) does not match the "
                              f"declared size {declared} (x-openstack-image-size).")
            # As the upload's length, a declared size over the cap is refused (413) before
            # the data is read, chunked uploads included.
            upload = Upload(exactly(upload.chunks, declared), declared, expected)
        # The store to write to (Glance's multi-store header; an unknown one: 400).
        source = DataSource(store=call.header("x-image-meta-store") or None)
        await call.run(functools.partial(
            self.images.update, call.principal, call.params["image_id"], [],
            source=source, upload=upload, on_failure=FailureRule.REQUEUE,
        ))
        return empty_response(204)

    async def download(self, call: Call) -> Response | ASGIApp:
        call.refuse_body()
        # A range is parsed once the size of the data is known (spec §2.6); an image without
        # data is 204 whatever range was asked for (Glance: 500, spec §7.3).
        wanted = RequestedRange(call.header("range"), call.header("content-range"))
        try:
            download = await in_thread(
                self.images.open_data, call.principal, call.params["image_id"], 0, None, wanted)
        except NotFound as exc:
            if exc.code == NO_DATA_YET:
                return empty_response(204)
            raise
        headers: list[Header] = []
        if download.image.checksum:
            # Hex, as Glance sends it (the header's standard form is base64; clients read hex).
            # data_response leaves it off a 206: it is the hash of the whole image.
            headers.append((b"content-md5", download.image.checksum.encode()))
        return await data_response(download, headers, wanted.byte_range)

    # -- tags ---------------------------------------------------------------------------------

    async def add_tag(self, call: Call) -> Response:
        return await self._change_tag(call, AddTag(call.params["tag"]))

    async def remove_tag(self, call: Call) -> Response:
        return await self._change_tag(call, RemoveTag(call.params["tag"]))

    async def _change_tag(self, call: Call, command: Command) -> Response:
        call.refuse_body()
        await in_thread(functools.partial(
            self.images.update, call.principal, call.params["image_id"], [command],
            on_failure=FailureRule.REQUEUE,
        ))
        return empty_response(204)

    # -- members ------------------------------------------------------------------------------

    async def list_members(self, call: Call) -> Response:
        call.refuse_body()
        found = await in_thread(functools.partial(
            self.members.list_members, call.principal, call.params["image_id"],
            shared_only=True))
        return json_response({"members": [member_json(m) for m in found],
                              "schema": MEMBERS_SCHEMA})

    async def show_member(self, call: Call) -> Response:
        call.refuse_body()
        member = await in_thread(functools.partial(
            self.members.get, call.principal, call.params["image_id"], call.params["member"],
            shared_only=True))
        return json_response(member_json(member))

    async def add_member(self, call: Call) -> Response:
        body = await call.json()
        member_id = body.get("member") if isinstance(body, dict) else None
        if not isinstance(member_id, str) or not member_id:
            raise Invalid('The request body must be a JSON object with a "member": the id of '
                          "the project to share the image with.")
        member = await in_thread(self.members.invite, call.principal, call.params["image_id"],
                                 member_id)
        return json_response(member_json(member))

    async def update_member(self, call: Call) -> Response:
        body = await call.json()
        # Other keys are ignored: the SDK and OSC send the member id along.
        if not isinstance(body, dict) or "status" not in body:
            raise Invalid('The request body must be a JSON object with a "status": pending, '
                          "accepted or rejected.")
        member = await in_thread(self.members.set_status, call.principal,
                                 call.params["image_id"], call.params["member"], body["status"])
        return json_response(member_json(member))

    async def remove_member(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.members.uninvite, call.principal, call.params["image_id"],
                        call.params["member"])
        return empty_response(204)

    # -- actions ------------------------------------------------------------------------------

    async def deactivate(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.images.deactivate, call.principal, call.params["image_id"])
        return empty_response(204)

    async def reactivate(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.images.reactivate, call.principal, call.params["image_id"])
        return empty_response(204)

    # -- locations (2.17) ---------------------------------------------------------------------

    async def add_location(self, call: Call) -> Response:
        url, expected = parse_location(await call.json())
        await in_thread(self.images.add_location, call.principal, call.params["image_id"],
                        url, expected)
        # Accepted: the data behind the URL is verified in the background (importing ->
        # active, or back to queued).
        return empty_response(202)

    async def locations(self, call: Call) -> Response:
        call.refuse_body()
        found = await in_thread(self.images.locations, call.principal, call.params["image_id"])
        return json_response([location_json(location) for location in found])

    # -- schemas ------------------------------------------------------------------------------

    async def schema(self, call: Call) -> Response:
        call.refuse_body()
        document = self.schemas.document(call.params["name"])
        if document is None:
            raise NotFound(f"Unknown schema {call.params['name']}.")
        return json_response(document)

    # -- info ---------------------------------------------------------------------------------

    async def usage(self, call: Call) -> Response:
        call.refuse_body()
        # Per-project limits come with unified limits (Keystone); without them Glance too
        # answers an empty document.
        found = await in_thread(self.images.quota_usage, call.principal)
        return json_response({"usage": found or {}})

    def _adds_keys(self) -> bool:
        """Whether ``_render`` adds keys to image_json's (multi-store, locations)."""
        return bool(self.show_locations or self.show_direct_url
                    or (self.catalog is not None and self.catalog.multi_store))

    def _render(self, image: Image, principal: Principal) -> dict[str, Any]:
        document = image_json(image, self.schemas.null_properties)
        if self.catalog is not None:
            add_stores_key(document, image, self.catalog)
        if self.show_locations or self.show_direct_url:
            add_location_keys(document, shown_locations(principal, image, self.images.policy),
                              locations=self.show_locations, direct_url=self.show_direct_url)
        return document
