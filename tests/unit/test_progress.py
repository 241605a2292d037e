"""The progress line of operator commands (glimpse.cli.progress): drawn in place on a terminal,
throttled, cut to the terminal's width, and nothing at all anywhere else."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import struct
import termios
from collections.abc import Iterator

import pytest

from glimpse.cli.progress import Progress, human_bytes, human_duration

ERASE = "\x1b[K"


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal (and has no file descriptor: 80 columns)."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _terminal_type(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")


def frames(output: str) -> list[str]:
    """The lines drawn in place, in order (each starts with a carriage return)."""
    return [frame.removesuffix(ERASE) for frame in output.split("\r")[1:]]


def test_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    clock = Clock()
    with Progress(3, 3000, stream, label="verifying images", clock=clock) as progress:
        for _ in range(3):
            clock.now += 1
            progress.advance(1, 1000)
        progress.phase("next", 1)
        progress.advance()
    assert not progress.live
    assert stream.getvalue() == ""


def test_silent_on_a_dumb_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")  # no cursor control to redraw with
    stream = FakeTerminal()
    with Progress(1, None, stream, label="x") as progress:
        progress.advance()
    assert stream.getvalue() == ""


def test_silent_on_a_closed_stream() -> None:
    stream = FakeTerminal()
    stream.close()
    with Progress(1, None, stream, label="x") as progress:
        progress.advance()
    assert not progress.live


def test_count_bytes_rate_and_eta_then_a_summary() -> None:
    stream = FakeTerminal()
    clock = Clock()
    with Progress(4, 4 << 20, stream, label="verifying images", unit="images",
                  clock=clock) as progress:
        clock.now += 2.0
        progress.advance(1, 1 << 20)
        clock.now += 2.0
        progress.advance(1, 1 << 20)
    drawn = frames(stream.getvalue())
    assert drawn[0] == "verifying images  0/4 images  0 B/4.0 MiB"
    assert drawn[1] == "verifying images  1/4 images  1.0 MiB/4.0 MiB  512.0 KiB/s  ETA 6.0 s"
    assert drawn[2] == "verifying images  2/4 images  2.0 MiB/4.0 MiB  512.0 KiB/s  ETA 4.0 s"
    # The end: the line erased, and a summary on a line of its own.
    assert drawn[3] == f"{ERASE}verifying images: 2 images, 2.0 MiB in 4.0 s (512.0 KiB/s)\n"
    assert stream.getvalue().endswith("\n")


def test_redrawn_at_most_every_interval() -> None:
    stream = FakeTerminal()
    clock = Clock()
    with Progress(1000, None, stream, label="checking", clock=clock, interval=0.2) as progress:
        for _ in range(1000):
            clock.now += 0.001  # a thousand items in one second
            progress.advance()
    drawn = frames(stream.getvalue())
    # The first line, about five redraws, and the end: never one per item.
    assert 5 <= len(drawn) <= 8, drawn
    assert drawn[-1].endswith("checking: 1000 items in 1.0 s (1000.0 items/s)\n")


def test_unknown_totals_show_no_eta() -> None:
    stream = FakeTerminal()
    clock = Clock()
    with Progress(None, None, stream, label="listing store file", unit="objects",
                  clock=clock) as progress:
        clock.now += 1
        progress.advance(5)
    assert frames(stream.getvalue())[1] == "listing store file  5 objects  5.0 objects/s"


def test_phases_each_end_with_their_summary() -> None:
    stream = FakeTerminal()
    clock = Clock()
    with Progress(None, None, stream, clock=clock) as progress:
        assert stream.getvalue() == ""  # nothing to show before the first phase
        progress.phase("listing store file", unit="objects")
        clock.now += 1
        progress.advance(3)
        progress.phase("checking images", 2, unit="images")
        clock.now += 1
        progress.advance(2)
    lines = stream.getvalue().split("\n")
    assert lines[0].endswith("listing store file: 3 objects in 1.0 s (3.0 objects/s)")
    assert lines[1].endswith("checking images: 2 images in 1.0 s (2.0 images/s)")
    assert lines[2] == ""


def test_an_error_clears_the_line_without_a_summary() -> None:
    stream = FakeTerminal()
    with pytest.raises(KeyboardInterrupt), Progress(3, None, stream, label="scrubbing") as p:
        p.advance()
        raise KeyboardInterrupt
    assert stream.getvalue().endswith(f"\r{ERASE}")
    assert "scrubbing:" not in stream.getvalue()


def test_a_terminal_that_goes_away_stops_the_display_not_the_work() -> None:
    class Hangup(FakeTerminal):
        def write(self, text: str) -> int:
            raise OSError(5, "Input/output error")

    with Progress(3, None, Hangup(), label="x", interval=0) as progress:
        for _ in range(3):
            progress.advance()
    assert not progress.live


def test_labels_cannot_drive_the_terminal() -> None:
    stream = FakeTerminal()
    with Progress(1, None, stream, label="image \x1b[2J\x1b]0;pwned\x07\r\n") as progress:
        progress.advance()
    output = stream.getvalue()
    assert "\x1b[2J" not in output and "\x1b]" not in output and "\x07" not in output
    assert "\n" not in output.rstrip("\n")  # one summary line, no line of the label's own
    assert "\\x1b[2J" in output


@pytest.fixture
def pseudo_terminal() -> Iterator[tuple[int, io.TextIOWrapper]]:
    """A real terminal: a pty 40 columns wide, its other end to read what was drawn."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    stream = open(terminal, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        yield controller, stream
    finally:
        stream.close()
        os.close(controller)


def read_all(fd: int) -> str:
    chunks = []
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_on_a_real_terminal_lines_fit_its_width(
    pseudo_terminal: tuple[int, io.TextIOWrapper],
) -> None:
    controller, stream = pseudo_terminal
    clock = Clock()
    with Progress(3, 3 << 30, stream, label="verifying images in store file",
                  unit="images", clock=clock) as progress:
        assert progress.live
        for _ in range(3):
            clock.now += 10
            progress.advance(1, 1 << 30)
    # The pty's line discipline turns "\n" into "\r\n" on the way out.
    output = read_all(controller).replace("\r\n", "\n")
    drawn = frames(output)
    assert len(drawn) == 5
    for frame in drawn:
        for line in frame.replace(ERASE, "").split("\n"):
            assert len(line) <= 39, line  # 40 columns, one spare: never wraps
    assert drawn[1].startswith("verifying images in store file  1/3 ")
    assert drawn[-1].startswith(f"{ERASE}verifying images in store file: 3 im")
    assert drawn[-1].endswith("…\n")


def test_human_units() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(10 << 30) == "10.0 GiB"
    assert human_bytes(5 << 50) == "5120.0 TiB"
    assert human_duration(0.04) == "0.0 s"
    assert human_duration(42.4) == "42 s"
    assert human_duration(185) == "3:05"
    assert human_duration(3723) == "1:02:03"


def test_log_records_get_a_clean_line_and_the_progress_comes_back_below() -> None:
    stream = FakeTerminal()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    clock = Clock()
    try:
        with Progress(2, None, stream, label="checking", clock=clock) as progress:
            clock.now += 0.01  # within the interval: no redraw of its own
            progress.advance()
            logging.getLogger("glimpse.test").warning("image 1: data missing; marked killed")
            clock.now += 0.01
            progress.advance()  # drawn again at once, below the record
    finally:
        root.removeHandler(handler)
    assert handler.filters == []  # the progress leaves the handler as it was
    output = stream.getvalue()
    assert f"\r{ERASE}WARNING image 1: data missing; marked killed\n\rchecking  2/2" in output
    assert output.endswith("checking: 2 items in 0.0 s (100.0 items/s)\n")
