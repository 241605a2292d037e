"""read_ahead: the chunks come through in order, a failing stream fails the consumer, and a
consumer that stops early is never held up by a stream that waits (a silent client)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from glimpse.errors import Invalid
from glimpse.stores.readahead import read_ahead


def test_the_chunks_come_through_in_order() -> None:
    chunks = [bytes([n]) * (n + 1) for n in range(200)]
    assert list(read_ahead(iter(chunks), 3)) == chunks


def test_a_failing_stream_fails_the_consumer_after_what_came_before() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise Invalid("Client disconnected before sending all image data")

    got = []
    with pytest.raises(Invalid):
        for chunk in read_ahead(chunks(), 1):
            got.append(chunk)
    assert got == [b"a", b"b"]


def test_a_consumer_that_stops_is_not_held_up_by_a_silent_stream() -> None:
    release = threading.Event()
    finished = threading.Event()

    def chunks() -> Iterator[bytes]:
        try:
            yield b"first"
            release.wait(30)  # a client that sends nothing more
            yield b"late"
            yield b"later"
        finally:
            finished.set()

    ahead = read_ahead(chunks(), 1)
    assert next(ahead) == b"first"
    ahead.close()  # returns at once although the stream still waits
    assert not finished.is_set()
    release.set()  # the request ends: the helper reads no further and lets the stream go
    assert finished.wait(30)


def test_a_full_queue_does_not_keep_the_helper_once_the_consumer_is_gone() -> None:
    finished = threading.Event()

    def chunks() -> Iterator[bytes]:
        try:
            for _ in range(1000):
                yield b"x"
        finally:
            finished.set()

    ahead = read_ahead(chunks(), 2)
    assert next(ahead) == b"x"
    ahead.close()
    assert finished.wait(30)
