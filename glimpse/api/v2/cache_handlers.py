"""The v2 cache API (v2.14, v2.16, v2.18; spec §4): the node's cached and queued images,
queueing for prefetch, deleting and clearing, pruning and cleaning, and the nodes holding an
image. Served only when the operator configured a cache."""

from __future__ import annotations

from starlette.responses import Response

from glimpse.api.http import empty_response, in_thread, json_response
from glimpse.api.v2.handlers import Call
from glimpse.domain.caching import CachedImage, CacheService

CLEAR_TARGET_HEADER = "x-image-cache-clear-target"


class CacheHandlers:
    def __init__(self, cache: CacheService) -> None:
        self.cache = cache

    async def state(self, call: Call) -> Response:
        call.refuse_body()
        cached, queued = await in_thread(self.cache.state, call.principal)
        return json_response({"cached_images": [_cached_json(c) for c in cached],
                              "queued_images": queued})

    async def queue(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.cache.queue, call.principal, call.params["image_id"])
        return empty_response(202)

    async def delete(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.cache.delete, call.principal, call.params["image_id"])
        return empty_response(204)

    async def clear(self, call: Call) -> Response:
        call.refuse_body()
        target = call.header(CLEAR_TARGET_HEADER) or ""
        await in_thread(self.cache.clear, call.principal, target)
        return empty_response(204)

    async def clean(self, call: Call) -> Response:
        call.refuse_body()
        await in_thread(self.cache.clean, call.principal)
        return empty_response(200)

    async def prune(self, call: Call) -> Response:
        call.refuse_body()
        pruned = await in_thread(self.cache.prune, call.principal)
        return json_response({"total_files_pruned": pruned.files,
                              "total_bytes_pruned": pruned.bytes})

    async def nodes(self, call: Call) -> Response:
        call.refuse_body()
        return json_response(await in_thread(self.cache.nodes, call.principal,
                                             call.params["image_id"]))


def _cached_json(entry: CachedImage) -> dict[str, object]:
    # Glance's drivers report the times as Unix timestamps (glanceclient formats them).
    return {"image_id": entry.image_id, "hits": entry.hits,
            "last_accessed": entry.last_accessed.timestamp(),
            "last_modified": entry.last_modified.timestamp(), "size": entry.size}
