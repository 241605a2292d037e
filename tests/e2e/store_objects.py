"""What the default store of a test server holds for one image, on every store the e2e suite
runs with (GLIMPSE_TEST_STORE): files under the data directory, objects in the Swift
all-in-one's test container (the S3 bucket of the same name is that container), or RBD images
(and trash entries) in the Ceph test pool."""

from __future__ import annotations

import os

import httpx

from tests import ceph, swift_aio
from tests.e2e.server import GlimpseServer

# The container (S3: bucket) that swift_aio.store_options names, the one the Swift store keeps
# the segments of its large objects in, and the one Swift's S3 layer keeps multipart parts in.
CONTAINERS = ("glimpse-test", "glimpse-test_segments", "glimpse-test+segments")


def stored(server: GlimpseServer, image_id: str) -> list[str]:
    """Every file or object whose name holds ``image_id``: [] once its data is gone."""
    store = os.environ.get("GLIMPSE_TEST_STORE", "file")
    if store == "file":
        root = server.data_dir / "images"
        if not root.exists():
            return []
        return [str(p) for p in root.rglob("*") if p.is_file() and image_id in p.name]
    if store == "rbd":
        return ceph.images(image_id)
    auth = httpx.get(f"{swift_aio.ENDPOINT}/auth/v1.0", timeout=10.0, headers={
        "X-Auth-User": swift_aio.USER, "X-Auth-Key": swift_aio.KEY})
    auth.raise_for_status()
    url, token = auth.headers["x-storage-url"], auth.headers["x-auth-token"]
    found: list[str] = []
    for container in CONTAINERS:
        listing = httpx.get(f"{url}/{container}", params={"prefix": image_id, "format": "json"},
                            headers={"X-Auth-Token": token}, timeout=10.0)
        if listing.status_code == 404:
            continue
        listing.raise_for_status()
        found += [f"{container}/{o['name']}" for o in listing.json()]
    return found
