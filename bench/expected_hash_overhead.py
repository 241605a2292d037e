"""The cost of an expected hash on the upload stream, in process, in one interleaved run.

Passes the same chunks (1 MiB each, 512 MiB by default) through ``UploadStream`` three ways,
A B C A B C: no expected hash, an expected sha512 (the default multihash: reused), and an
expected sha256 (one more hasher, in a helper thread of its own). Reports the median wall and
CPU seconds of each and their ratios to the first: compare ratios, never absolute figures, on a
shared machine. The consumer does nothing with the chunks, so this is the stream's own cost,
the worst case for any overhead (a store write would overlap it).

    .venv/bin/python bench/expected_hash_overhead.py [--mib 512] [--rounds 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from glimpse.errors import OverLimit
from glimpse.streams.expected_hash import ExpectedHash
from glimpse.streams.upload import UploadStream

BLOCK = 1 << 20


def run(chunks: list[bytes], expected: ExpectedHash | None) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in UploadStream(chunks, limit=1 << 50, limit_error=OverLimit("cap"),
                          expected_hash=expected):
        pass
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    block = os.urandom(BLOCK)
    chunks = [block] * args.mib
    whole = hashlib.sha256()
    whole512 = hashlib.sha512()
    for chunk in chunks:
        whole.update(chunk)
        whole512.update(chunk)
    cases = {
        "none": None,
        "sha512 (reused)": ExpectedHash("sha512", whole512.hexdigest()),
        "sha256 (one more)": ExpectedHash("sha256", whole.hexdigest()),
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, expected in cases.items():
            results[name].append(run(chunks, expected))
    base_wall = statistics.median(w for w, _ in results["none"])
    base_cpu = statistics.median(c for _, c in results["none"])
    print(f"{args.mib} MiB through UploadStream, {args.rounds} rounds, medians")
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        print(f"{name:18} wall {wall:6.3f} s ({wall / base_wall:5.2f}x)  "
              f"cpu {cpu:6.3f} s ({cpu / base_cpu:5.2f}x)  "
              f"{args.mib / wall:7.0f} MiB/s")


if __name__ == "__main__":
    main()
