"""The heap trimmer is found where glibc provides it, and calling it is harmless."""

from __future__ import annotations

import platform

import pytest

from glimpse import heap


def test_trimmer_on_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's; elsewhere the trimmer is None by design")
    trim = heap.trimmer()
    assert trim is not None
    garbage = [bytes(1 << 20) for _ in range(8)]
    del garbage[::2]
    assert trim() in (0, 1)


def test_limit_arenas_on_glibc() -> None:
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's; elsewhere limit_arenas says False by design")
    assert heap.limit_arenas(heap.ARENAS) is True
