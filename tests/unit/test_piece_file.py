"""PieceFile: a part held as its chunks reads back byte for byte, in any read sizes, after any
seek, and hands whole chunks out uncopied."""

from __future__ import annotations

import os

import pytest

from glimpse.stores.segments import PieceFile, Pieces


def read_all(piece: PieceFile, size: int) -> bytes:
    out = []
    while data := piece.read(size):
        assert len(data) <= size
        out.append(data)
    return b"".join(out)


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 16, 200_000])
def test_reads_of_any_size_give_the_piece(size: int) -> None:
    chunks = [os.urandom(n) for n in (1, 1 << 16, 5, 7_000, 1 << 16)]
    piece = PieceFile(chunks)
    assert piece.size == sum(map(len, chunks))
    assert read_all(piece, size) == b"".join(chunks)
    assert piece.read(size) == b""


def test_whole_chunks_are_handed_out_as_they_are() -> None:
    chunks = [os.urandom(1 << 20) for _ in range(3)]
    piece = PieceFile(chunks)
    assert all(piece.read(1 << 20) is chunk for chunk in chunks)


def test_seek_tell_and_read_to_the_end() -> None:
    chunks = [b"abc", b"defg", b"hi"]
    piece = PieceFile(chunks)
    assert piece.seek(0, os.SEEK_END) == 9 and piece.tell() == 9
    assert piece.seek(2) == 2
    assert piece.read() == b"cdefghi"
    piece.seek(-3, os.SEEK_END)
    assert piece.read(10) == b"g"  # a read stops at the end of a chunk
    piece.seek(0)
    assert piece.read(-1) == b"abcdefghi"


def test_an_empty_piece_is_false() -> None:
    pieces = Pieces(iter([b"ab", b"", b"cd"]))
    first = pieces.read_piece(3)
    assert first and first.size == 3 and first.read() == b"abc"
    rest = pieces.read_piece(10)
    assert rest.read() == b"d"
    assert not pieces.read_piece(10)
