"""Cutting a stream of chunks into consecutive pieces of bounded size, without copying more than
one chunk at a time: what Swift segments and S3 parts are made of."""

from __future__ import annotations

import bisect
import itertools
import os
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

    def read_piece(self, size: int) -> PieceFile:
        """The next piece, held in memory (at most ``size`` bytes) as its chunks."""
        return PieceFile(list(self.next_piece(size)))


class PieceFile:
    """A piece held as its chunks, read as a seekable, read-only file (what an S3 part is sent
    from). The chunks are never joined: a read that covers a whole chunk returns it as it is,
    so hashing and sending a part copy nothing more; a read stops at the end of a chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self._starts = list(itertools.accumulate((len(c) for c in chunks), initial=0))
        self.size = self._starts[-1]
        self._position = 0

    def __bool__(self) -> bool:
        return self.size > 0

    def read(self, size: int = -1) -> bytes:
        if self._position >= self.size:
            return b""
        if size < 0:
            rest = self._slices(self.size - self._position)
            return b"".join(rest)
        (data,) = self._slices(min(size, self._chunk_left()))
        return data

    def _chunk_left(self) -> int:
        index = bisect.bisect_right(self._starts, self._position) - 1
        return self._starts[index + 1] - self._position

    def _slices(self, size: int) -> list[bytes]:
        """``size`` bytes from the position on, as whole chunks where possible."""
        out: list[bytes] = []
        while size > 0:
            index = bisect.bisect_right(self._starts, self._position) - 1
            chunk = self._chunks[index]
            at = self._position - self._starts[index]
            end = min(len(chunk), at + size)
            out.append(chunk if at == 0 and end == len(chunk) else chunk[at:end])
            self._position += end - at
            size -= end - at
        return out

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self.size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True
