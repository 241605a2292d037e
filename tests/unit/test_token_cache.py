"""The validated-token cache: bounds, lifetimes, one load per key in flight, no negative cache."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from glimpse.api.token_cache import Loaded, TokenCache, token_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def loader(value: str | None, lifetime: float = 3600.0,
           calls: list[str] | None = None) -> Callable[[], Awaitable[Loaded[str] | None]]:
    async def load() -> Loaded[str] | None:
        if calls is not None:
            calls.append("load")
        return None if value is None else Loaded(value, lifetime)
    return load


def test_key_is_a_sha256_and_not_the_token() -> None:
    key = token_key("gAAAAAsecret")
    assert len(key) == 64 and "secret" not in key
    assert key == token_key("gAAAAAsecret") != token_key("gAAAAAsecreT")


def test_a_hit_does_not_load_again() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)
    calls: list[str] = []

    async def run() -> None:
        assert await cache.get_or_load("k", loader("v", calls=calls)) == "v"
        assert await cache.get_or_load("k", loader("other", calls=calls)) == "v"
    asyncio.run(run())
    assert calls == ["load"]
    assert cache.get("k") == "v"


def test_an_entry_lives_at_most_ttl_seconds() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10, clock=clock)
    asyncio.run(cache.get_or_load("k", loader("v", lifetime=3600)))
    clock.now += 299.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k") is None
    assert len(cache) == 0


def test_an_entry_never_outlives_its_token() -> None:
    clock = Clock()
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10, clock=clock)
    asyncio.run(cache.get_or_load("k", loader("v", lifetime=10)))
    clock.now += 9.9
    assert cache.get("k") == "v"
    clock.now += 0.1
    assert cache.get("k") is None


@pytest.mark.parametrize("lifetime", [0.0, -5.0])
def test_an_expired_value_is_returned_once_and_not_kept(lifetime: float) -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)
    assert asyncio.run(cache.get_or_load("k", loader("v", lifetime=lifetime))) == "v"
    assert cache.get("k") is None


@pytest.mark.parametrize("ttl", [0, -1])
def test_no_ttl_keeps_nothing(ttl: int) -> None:
    cache: TokenCache[str] = TokenCache(ttl=ttl, max_entries=10)
    calls: list[str] = []

    async def run() -> None:
        for _ in range(3):
            assert await cache.get_or_load("k", loader("v", calls=calls)) == "v"
    asyncio.run(run())
    assert calls == ["load"] * 3 and len(cache) == 0


def test_no_negative_cache() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)
    calls: list[str] = []

    async def run() -> None:
        assert await cache.get_or_load("k", loader(None, calls=calls)) is None
        assert await cache.get_or_load("k", loader(None, calls=calls)) is None
        assert await cache.get_or_load("k", loader("now valid", calls=calls)) == "now valid"
    asyncio.run(run())
    assert calls == ["load"] * 3


def test_bounded_least_recently_used_goes_first() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=3)

    async def run() -> None:
        for key in "abc":
            await cache.get_or_load(key, loader(key))
        assert cache.get("a") == "a"  # used: b is now the oldest
        await cache.get_or_load("d", loader("d"))
    asyncio.run(run())
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["a", "c", "d"]


def test_many_failed_loads_do_not_evict_valid_entries() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=2)

    async def run() -> None:
        await cache.get_or_load("good", loader("v"))
        for i in range(100):
            await cache.get_or_load(f"bad{i}", loader(None))
    asyncio.run(run())
    assert cache.get("good") == "v"


def test_concurrent_lookups_of_one_key_make_one_load() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)
    calls: list[str] = []
    release = asyncio.Event()

    async def slow() -> Loaded[str] | None:
        calls.append("load")
        await release.wait()
        return Loaded("v", 3600)

    async def run() -> list[str | None]:
        waiters = [asyncio.ensure_future(cache.get_or_load("k", slow)) for _ in range(50)]
        other = asyncio.ensure_future(cache.get_or_load("other", slow))
        await asyncio.sleep(0.01)
        release.set()
        results = await asyncio.gather(*waiters)
        await other
        return results
    results = asyncio.run(run())
    assert results == ["v"] * 50
    assert calls == ["load", "load"]  # one per key


def test_concurrent_waiters_share_a_failure_and_it_is_not_kept() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)
    calls: list[str] = []

    async def failing() -> Loaded[str] | None:
        calls.append("load")
        await asyncio.sleep(0.01)
        raise RuntimeError("keystone down")

    async def run() -> list[object]:
        waiters = [cache.get_or_load("k", failing) for _ in range(10)]
        return await asyncio.gather(*waiters, return_exceptions=True)
    results = asyncio.run(run())
    assert all(isinstance(r, RuntimeError) for r in results)
    assert calls == ["load"]
    assert asyncio.run(cache.get_or_load("k", loader("v"))) == "v"


def test_a_cancelled_caller_does_not_cancel_the_others_load() -> None:
    cache: TokenCache[str] = TokenCache(ttl=300, max_entries=10)

    async def slow() -> Loaded[str] | None:
        await asyncio.sleep(0.05)
        return Loaded("v", 3600)

    async def run() -> str | None:
        first = asyncio.ensure_future(cache.get_or_load("k", slow))
        second = asyncio.ensure_future(cache.get_or_load("k", slow))
        await asyncio.sleep(0.01)
        first.cancel()
        return await second
    assert asyncio.run(run()) == "v"
    assert cache.get("k") == "v"
