"""``glimpse serve`` with the upload stream's two hashes (MD5 for ``checksum``, the multihash
for ``os_hash_value``) replaced by no-ops: for benchmarks only, never a way to run glimpse.

``bench/store_throughput.py --unhashed`` runs a server through this next to a normal one, so
that the cost of hashing every uploaded byte twice, which a direct client such as ``rbd
import`` does not pay, is measured apart from the rest of the data path. Images uploaded to it
record digests of zeros.

    .venv/bin/python bench/unhashed_serve.py serve --port 9999
"""

from __future__ import annotations

import hashlib
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import glimpse.streams.upload as upload
from glimpse.cli.main import main


class NoHash:
    """Takes data and does nothing with it; its digest is zeros of the real digest's length."""

    def __init__(self, name: str, digest_size: int) -> None:
        self.name = name  # the upload stream names its hash threads after it
        self.digest_size = digest_size

    def update(self, data: bytes) -> None:
        pass

    def hexdigest(self) -> str:
        return "0" * (2 * self.digest_size)


def _md5(usedforsecurity: bool = True) -> NoHash:
    return NoHash("md5", hashlib.md5().digest_size)


def _new(name: str) -> NoHash:
    return NoHash(name, hashlib.new(name).digest_size)


# Only the upload stream's view of hashlib changes; everything else hashes as usual.
upload.hashlib = types.SimpleNamespace(md5=_md5, new=_new)  # type: ignore[assignment]

if __name__ == "__main__":
    sys.exit(main())
