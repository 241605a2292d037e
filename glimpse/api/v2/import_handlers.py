"""v2 interoperable import on the wire (spec §3): ``/v2/info/import``, ``PUT .../stage``,
``POST .../import`` and ``GET .../tasks``. Rules live in glimpse.domain.imports."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from starlette.responses import Response

from glimpse.api.expected_hash_header import V2_HEADER, parse_expected_hash
from glimpse.api.http import empty_response, in_thread, json_response
from glimpse.api.v2.handlers import Call
from glimpse.api.v2.task_json import image_task_json
from glimpse.api.v2.upload_body import declared_size, exactly
from glimpse.domain.data import Upload
from glimpse.domain.glance_download import GLANCE_DOWNLOAD, parse_remote
from glimpse.domain.imports import METHODS, WEB_DOWNLOAD, ImportRequest, ImportService
from glimpse.errors import Invalid, UnsupportedMediaType
from glimpse.log_format import REQUEST_IDS

STORE_HEADER = "x-image-meta-store"
_BODY_KEYS = ("method", "stores", "all_stores", "all_stores_must_succeed")


class ImportHandlers:
    def __init__(self, imports: ImportService) -> None:
        self.imports = imports

    async def info_import(self, call: Call) -> Response:
        call.refuse_body()
        return json_response({"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": list(self.imports.methods)}})

    async def stage(self, call: Call) -> Response:
        if not call.body_type_ok():
            raise UnsupportedMediaType("The Content-Type of image data must be "
                                       "application/octet-stream.")
        expected = parse_expected_hash(call.header(V2_HEADER), V2_HEADER)
        declared = declared_size(call.header("x-openstack-image-size"))
        upload = call.upload() or Upload(chunks=iter(()), length=0)
        if declared is not None:
            if upload.length is not None and upload.length != declared:
                raise Invalid(f"The Content-Length ({upload.length}) does not match the "
                              f"declared size {declared} (x-openstack-image-size).")
            upload = Upload(exactly(upload.chunks, declared), declared)
        await call.run(functools.partial(self.imports.stage, call.principal,
                                         call.params["image_id"], upload, expected))
        return empty_response(204)

    async def import_image(self, call: Call) -> Response:
        request = parse_import(await call.json(), call.header(STORE_HEADER),
                               call.header(V2_HEADER))
        if request.method == GLANCE_DOWNLOAD:
            # The caller's own token (keystone mode validated it): glance-download reads the
            # caller's catalog and the remote image with it.
            token = call.header("x-auth-token") or call.header("x-storage-token")
            request = dataclasses.replace(request, token=token.strip() if token else None)
        ids = REQUEST_IDS.get()
        await in_thread(self.imports.import_image, call.principal, call.params["image_id"],
                        request, None if ids is None else ids.local)
        return empty_response(202)

    async def image_tasks(self, call: Call) -> Response:
        call.refuse_body()
        found = await in_thread(self.imports.image_tasks, call.principal,
                                call.params["image_id"])
        return json_response({"tasks": [image_task_json(task) for task in found]})


def parse_import(body: Any, store_header: str | None, hash_header: str | None
                 ) -> ImportRequest:
    """The import body (spec §3), with every 400 rule that needs no image."""
    if not isinstance(body, dict):
        raise Invalid("The import request body must be a JSON object.")
    method = body.get("method")
    if not isinstance(method, dict):
        raise Invalid('The import request needs a "method" object with a "name".')
    name = method.get("name")
    if not isinstance(name, str) or not name:
        raise Invalid('The import method needs a "name".')
    if name not in METHODS:
        raise Invalid(f"Import method {name} is not supported (known: {', '.join(METHODS)}).")
    all_stores = body.get("all_stores", False)
    must_succeed = body.get("all_stores_must_succeed", True)
    if not isinstance(all_stores, bool):
        raise Invalid("all_stores must be a boolean.")
    if not isinstance(must_succeed, bool):
        raise Invalid("all_stores_must_succeed must be a boolean.")
    stores: tuple[str, ...] | None = None
    if "stores" in body and body["stores"] is not None:
        given = body["stores"]
        if not isinstance(given, list) or not all(isinstance(s, str) and s for s in given):
            raise Invalid("stores must be a list of store ids.")
        stores = tuple(given)
    header = store_header.strip() if store_header is not None else None
    if all_stores and (stores is not None or header):
        raise Invalid("all_stores may not be given with stores or X-Image-Meta-Store.")
    if stores is not None and header:
        raise Invalid("stores and X-Image-Meta-Store may not both be given.")
    if header:
        stores = (header,)
    uri = method.get("uri")
    if name == WEB_DOWNLOAD and (not isinstance(uri, str) or not uri):
        raise Invalid("The web-download import method needs a uri.")
    expected = parse_expected_hash(hash_header, V2_HEADER)
    if expected is not None and name != WEB_DOWNLOAD:
        raise Invalid("OpenStack-Image-Expected-Hash goes with the data: on the stage for "
                      "glance-direct, on the import only for web-download.")
    remote = parse_remote(method) if name == GLANCE_DOWNLOAD else None
    return ImportRequest(
        method=name, uri=uri if isinstance(uri, str) else None, stores=stores, remote=remote,
        all_stores=all_stores, must_succeed=must_succeed, expected=expected,
        body={k: body[k] for k in _BODY_KEYS if k in body})
