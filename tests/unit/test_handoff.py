"""The loop-to-thread handoff an upload's blocks cross (glimpse/api/handoff.py), and the hash
threads they go on to (glimpse/streams/upload.py)."""

from __future__ import annotations

import asyncio
import hashlib
import threading

import pytest

from glimpse.api.handoff import Handoff
from glimpse.streams.upload import HashThread


def test_items_arrive_in_order_and_put_waits_while_depth_items_wait() -> None:
    async def main() -> list[int]:
        handoff: Handoff[int] = Handoff(depth=2)
        taken: list[int] = []
        gate = threading.Event()

        def taker() -> None:
            gate.wait(10)
            while (item := handoff.take()) is not None:
                taken.append(item)

        thread = threading.Thread(target=taker)
        thread.start()
        await handoff.put(0)
        await handoff.put(1)
        # Two wait and nothing takes yet: the third put waits until something is taken.
        third = asyncio.ensure_future(handoff.put(2))
        await asyncio.sleep(0.05)
        assert not third.done()
        gate.set()
        await asyncio.wait_for(third, 10)
        for i in range(3, 500):
            await handoff.put(i)
        handoff.close()
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        return taken

    assert asyncio.run(main()) == list(range(500))


def test_a_cancelled_put_leaves_the_handoff_usable_and_close_ends_every_taker() -> None:
    async def main() -> list[int | None]:
        handoff: Handoff[int] = Handoff(depth=1)
        await handoff.put(1)
        blocked = asyncio.ensure_future(handoff.put(2))
        await asyncio.sleep(0.01)
        blocked.cancel()
        with pytest.raises(asyncio.CancelledError):
            await blocked
        handoff.close()
        loop = asyncio.get_running_loop()
        return [await loop.run_in_executor(None, handoff.take) for _ in range(3)]

    assert asyncio.run(main()) == [1, None, None]


def test_a_hash_thread_hashes_in_order_and_hands_back_an_update_error() -> None:
    md5 = hashlib.md5()
    helper = HashThread(md5)
    chunks = [bytes([i]) * (100_000 + i) for i in range(21)]
    for at in range(0, len(chunks), 3):
        helper.give(chunks[at:at + 3])
    for _ in range(0, len(chunks), 3):
        helper.wait_one()
    helper.stop()
    assert md5.hexdigest() == hashlib.md5(b"".join(chunks)).hexdigest()

    class Broken:
        name = "broken"

        def update(self, chunk: bytes) -> None:
            raise OSError("no hashing today")

    broken = HashThread(Broken())
    broken.give([b"x"])
    with pytest.raises(OSError, match="no hashing today"):
        broken.wait_one()
    broken.stop()
