"""Cutting a stream of chunks into consecutive pieces of bounded size, without copying more than
one chunk at a time: what Swift segments and S3 parts are made of."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class Pieces:
    """Reads ``chunks`` piece by piece: ``next_piece(n)`` yields the next ``n`` bytes (fewer at
    the end of the stream) as the chunks arrive; ``exhausted`` tells when nothing is left."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._rest = b""
        self._done = False

    @property
    def exhausted(self) -> bool:
        """True once the stream has no more bytes (reads ahead one chunk to know)."""
        if self._rest:
            return False
        if not self._done:
            self._rest = self._pull()
        return not self._rest

    def _pull(self) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        self._done = True
        return b""

    def next_piece(self, size: int) -> Iterator[bytes]:
        left = size
        while left > 0:
            chunk = self._rest or self._pull()
            self._rest = b""
            if not chunk:
                return
            if len(chunk) > left:
                chunk, self._rest = chunk[:left], chunk[left:]
            left -= len(chunk)
            yield chunk

    def read_piece(self, size: int) -> bytes:
        """The next piece as one bytes object (it is held in memory: at most ``size``)."""
        return b"".join(self.next_piece(size))
