"""The v1 handlers: parse the wire form, call one service method, render."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp

from glimpse.api.expected_hash_header import V1_HEADER, parse_expected_hash, with_expected_hash
from glimpse.api.http import (
    RequestContext,
    data_response,
    empty_response,
    in_thread,
    json_response,
    read_json,
)
from glimpse.api.v1 import headers as codec
from glimpse.api.v1.query import parse_list_query
from glimpse.domain.data import Upload
from glimpse.domain.images import ImageService
from glimpse.domain.lifecycle import FailureRule
from glimpse.domain.members import MemberService
from glimpse.domain.model import (
    Command,
    ImageInput,
    MemberStatus,
    RemoveOtherProperties,
    Scope,
    SetFields,
    SetProperties,
)
from glimpse.errors import Invalid

Handler = Callable[["Call"], Awaitable[Response | ASGIApp]]


@dataclasses.dataclass
class Call(RequestContext):
    """One v1 request, as the handlers see it: the shared request context (identity, route
    parameters, the body as an upload) plus v1's image headers."""

    def image_input(self) -> ImageInput:
        meta = [
            (name.decode("latin-1"), codec.decode_value(value))
            for name, value in self.request.scope["headers"]
            if name.startswith(codec.META.encode()) or name == codec.COPY_FROM.encode()
        ]
        return codec.parse_image_headers(meta)

    def upload(self) -> Upload | None:
        expected = parse_expected_hash(self.header(V1_HEADER), V1_HEADER)
        upload = super().upload()
        if upload is not None and not self.body_type_ok():
            raise Invalid("Content-Type must be application/octet-stream")
        return with_expected_hash(upload, expected, V1_HEADER)


@dataclasses.dataclass(frozen=True)
class ListLimits:
    default: int
    maximum: int


class V1Handlers:
    def __init__(
        self,
        images: ImageService,
        members: MemberService,
        limits: ListLimits,
        inline_reads: bool = False,
    ) -> None:
        """``inline_reads``: answer single-image metadata reads on the event loop instead of
        in a worker thread. Only for databases that cannot stall a read (SQLite in WAL mode:
        a local file whose readers never wait for writers), where the thread hop costs more
        than the query."""
        self.images = images
        self.members = members
        self.limits = limits
        self.inline_reads = inline_reads

    # -- images -------------------------------------------------------------------------------

    async def list_brief(self, call: Call) -> Response:
        found = await self._list(call)
        return json_response({"images": [codec.brief_json(i) for i in found]})

    async def list_detail(self, call: Call) -> Response:
        found = await self._list(call)
        return json_response({"images": [codec.image_json(i) for i in found]})

    async def _list(self, call: Call) -> list[Any]:
        raw = call.request.scope.get("query_string", b"").decode("latin-1")
        try:
            params = parse_qsl(raw, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError as exc:
            raise Invalid("Query parameters must be UTF-8 text") from exc
        if any("\x00" in k or "\x00" in v for k, v in params):
            raise Invalid("Query parameters may not contain NUL characters")
        query, is_public, marker = parse_list_query(
            params, self.limits.default, self.limits.maximum
        )
        # Admins list everything with is_public=none, and every image not public with false.
        query.scope = Scope.ALL if is_public is None else \
            Scope.NON_PUBLIC if is_public is False else Scope.VISIBLE
        return await in_thread(self.images.list_images, call.principal, query, marker)

    async def create(self, call: Call) -> Response:
        data = call.image_input()
        data.fields.pop("status", None)  # v1 ignores a status sent on create
        image = await call.run(self.images.create, call.principal, data, call.upload(),
                               FailureRule.KILL)
        location = f"{call.base_url_of(call.request)}/v1/images/{image.id}"
        headers = [(b"location", location.encode())]
        if image.checksum:
            headers.append((b"etag", image.checksum.encode()))
        return json_response({"image": codec.image_json(image)}, 201, headers)

    async def show(self, call: Call) -> Response:
        if self.inline_reads:
            image = self.images.get(call.principal, call.params["image_id"])
        else:
            image = await in_thread(self.images.get, call.principal, call.params["image_id"])
        response = empty_response(200, codec.image_headers(image))
        return response

    async def download(self, call: Call) -> ASGIApp:
        download = await in_thread(
            self.images.open_data, call.principal, call.params["image_id"]
        )
        # v1 has no ranges: all of the data, and no Accept-Ranges promising them.
        return await data_response(download, codec.image_headers(download.image),
                                   accept_ranges=False)

    async def update(self, call: Call) -> Response:
        data = call.image_input()
        purge_text = call.header(codec.PURGE_PROPS)
        purge = True if purge_text is None else codec.parse_bool(purge_text)
        upload = call.upload()
        commands: list[Command] = [SetFields(data.fields), SetProperties(data.properties)]
        if purge and upload is None:
            # v1 resends the properties it keeps: the others go.
            commands.append(RemoveOtherProperties(frozenset(data.properties)))
        image = await call.run(functools.partial(
            self.images.update, call.principal, call.params["image_id"], commands,
            source=data.source, upload=upload, on_failure=FailureRule.KILL,
        ))
        headers = [(b"etag", image.checksum.encode())] if image.checksum else []
        return json_response({"image": codec.image_json(image)}, 200, headers)

    async def delete(self, call: Call) -> Response:
        await in_thread(self.images.delete, call.principal, call.params["image_id"])
        return empty_response(200)

    # -- members ------------------------------------------------------------------------------

    async def list_members(self, call: Call) -> Response:
        found = await in_thread(self.members.list_members, call.principal, call.params["image_id"])
        return json_response(
            {"members": [{"member_id": m.member_id, "can_share": m.can_share} for m in found]}
        )

    async def show_member(self, call: Call) -> Response:
        member = await in_thread(
            self.members.get, call.principal, call.params["image_id"], call.params["member"]
        )
        return json_response(
            {"member": {"member_id": member.member_id, "can_share": member.can_share}}
        )

    async def add_member(self, call: Call) -> Response:
        body = await read_json(call.request)
        can_share: bool | None = None
        if body is not None:
            if not isinstance(body, dict):
                raise Invalid("Request body must be a JSON object")
            member = body.get("member")
            if isinstance(member, dict) and "can_share" in member:
                can_share = _truthy(member["can_share"])
        await in_thread(
            self.members.add, call.principal, call.params["image_id"], call.params["member"],
            can_share, MemberStatus.ACCEPTED,
        )
        return empty_response(204)

    async def replace_members(self, call: Call) -> Response:
        body = await read_json(call.request)
        if not isinstance(body, dict) or not isinstance(body.get("memberships"), list):
            raise Invalid('Request body must be a JSON object with a "memberships" list')
        members: list[tuple[str, bool | None]] = []
        for entry in body["memberships"]:
            if not isinstance(entry, dict) or "member_id" not in entry:
                raise Invalid('Every membership needs a "member_id"')
            member_id = entry["member_id"]
            if not isinstance(member_id, str | int) or isinstance(member_id, bool):
                raise Invalid("member_id must be a string")
            can_share = _truthy(entry["can_share"]) if "can_share" in entry else None
            members.append((str(member_id), can_share))
        await in_thread(
            self.members.replace, call.principal, call.params["image_id"], members,
            MemberStatus.ACCEPTED,
        )
        return empty_response(204)

    async def remove_member(self, call: Call) -> Response:
        await in_thread(
            self.members.remove, call.principal, call.params["image_id"], call.params["member"]
        )
        return empty_response(204)

    async def shared_images(self, call: Call) -> Response:
        found = await in_thread(self.members.shared_images, call.principal, call.params["member"])
        return json_response(
            {"shared_images": [{"image_id": m.image_id, "can_share": m.can_share} for m in found]}
        )


def _truthy(value: Any) -> bool:
    """``can_share`` coercion: JSON truthiness, but the strings "false", "0", "no", "off" are
    false (Q13, improved)."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "f", "n")
    return bool(value)
