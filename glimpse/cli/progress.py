"""A progress line for long operator commands (``glimpse store check --verify``, ``store
scrub``): count, bytes, rate and ETA, redrawn in place on a terminal.

On a terminal the line is redrawn at most every ``interval`` seconds (a carriage return, the
whole new line, then erase-to-end-of-line, in one write: no blank frame in between, so no
flicker), cut to the terminal's width (a wrapped line could not be redrawn in place), and
replaced by a summary line at the end of each phase. Anywhere else (cron jobs, pipes, log
files) it writes nothing at all: only the command's own report reaches those.

Text shown here that came from clients (image names) goes through ``escape_controls``, so
that it cannot move the cursor or recolour the operator's terminal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

from glimpse.log_format import escape_controls

# At most five redraws a second: readable, and cheap over a slow SSH link.
INTERVAL = 0.2
_ERASE_TO_END = "\x1b[K"
_DEFAULT_WIDTH = 80


class Progress:
    """Shows how far a task has got; a context manager. ``advance`` is cheap enough to call
    per chunk read (it only draws when ``interval`` has passed)."""

    def __init__(self, total_items: int | None = None, total_bytes: int | None = None,
                 stream: TextIO | None = None, *, label: str = "", unit: str = "items",
                 interval: float = INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._live = _is_terminal(self._stream)
        self._interval = interval
        self._clock = clock
        self._label = escape_controls(label)
        self._unit = unit
        self._total_items = total_items
        self._total_bytes = total_bytes
        self._items = 0
        self._bytes = 0
        self._started = 0.0
        self._drawn_at = 0.0
        self._open = False
        self._shown = False
        self._handlers: list[logging.Handler] = []

    @property
    def live(self) -> bool:
        """Whether anything is shown (the stream is a terminal)."""
        return self._live

    def __enter__(self) -> Progress:
        if self._live:
            # A log record written to the same terminal (store check --repair's warnings)
            # would land after the progress line; each gets a clean line instead, and the
            # progress is drawn again below it at the next advance.
            self._handlers = [h for h in logging.getLogger().handlers
                              if getattr(h, "stream", None) is self._stream]
            for handler in self._handlers:
                handler.addFilter(self._make_room)
        self._begin()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        # Interrupted (Ctrl-C, an error): clear the line and say nothing more; the error's
        # own message follows on a clean line.
        self._end(summary=kind is None)
        for handler in self._handlers:
            handler.removeFilter(self._make_room)
        self._handlers = []

    def _make_room(self, record: logging.LogRecord) -> bool:
        if self._live and self._open and self._shown:
            self._write(f"\r{_ERASE_TO_END}")
            self._drawn_at = float("-inf")  # drawn again at the next advance
        return True

    def phase(self, label: str, total_items: int | None = None,
              total_bytes: int | None = None, unit: str = "items") -> None:
        """End the current phase (its summary line) and start counting another."""
        self._end(summary=True)
        self._label = escape_controls(label)
        self._unit = unit
        self._total_items = total_items
        self._total_bytes = total_bytes
        self._items = self._bytes = 0
        self._begin()

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        self._items += items
        self._bytes += nbytes
        if self._live:
            now = self._clock()
            if now - self._drawn_at >= self._interval:
                self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be drawn now (uncut)."""
        elapsed = (self._clock() if now is None else now) - self._started
        parts = [self._label] if self._label else []
        count = f"{self._items}" if self._total_items is None else (
            f"{self._items}/{self._total_items}")
        parts.append(f"{count} {self._unit}")
        if self._total_bytes is not None:
            parts.append(f"{human_bytes(self._bytes)}/{human_bytes(self._total_bytes)}")
        elif self._bytes:
            parts.append(human_bytes(self._bytes))
        rate = self._rate(elapsed)
        if rate:
            parts.append(rate)
        eta = self._eta(elapsed)
        if eta is not None:
            parts.append(f"ETA {human_duration(eta)}")
        return "  ".join(parts)

    def summary(self, now: float | None = None) -> str:
        elapsed = (self._clock() if now is None else now) - self._started
        head = f"{self._label}: " if self._label else ""
        done = f"{self._items} {self._unit}"
        if self._bytes or self._total_bytes:
            done += f", {human_bytes(self._bytes)}"
        rate = self._rate(elapsed)
        return f"{head}{done} in {human_duration(elapsed)}" + (f" ({rate})" if rate else "")

    def _rate(self, elapsed: float) -> str:
        if elapsed <= 0:
            return ""
        if self._bytes:
            return f"{human_bytes(self._bytes / elapsed)}/s"
        if self._items:
            return f"{self._items / elapsed:.1f} {self._unit}/s"
        return ""

    def _eta(self, elapsed: float) -> float | None:
        """Seconds left at the average rate so far; None when there is no total to reach or
        nothing done yet to measure a rate by."""
        if elapsed <= 0:
            return None
        if self._total_bytes is not None and self._bytes:
            return max(self._total_bytes - self._bytes, 0) * elapsed / self._bytes
        if self._total_items is not None and self._items:
            return max(self._total_items - self._items, 0) * elapsed / self._items
        return None

    def _begin(self) -> None:
        self._started = self._clock()
        self._open = True
        self._shown = False
        if self._live and (self._label or self._total_items is not None
                           or self._total_bytes is not None):
            # Drawn at once: even a phase over within one interval shows it started. (A
            # Progress made without either, to be given phases, shows nothing until then.)
            self._draw(self._started)

    def _end(self, summary: bool) -> None:
        if not self._open:
            return
        self._open = False
        if self._live and self._shown:
            text = f"{self._cut(self.summary())}\n" if summary else ""
            self._write(f"\r{_ERASE_TO_END}{text}")

    def _draw(self, now: float) -> None:
        self._drawn_at = now
        self._shown = True
        self._write(f"\r{self._cut(self.line(now))}{_ERASE_TO_END}")

    def _cut(self, text: str) -> str:
        # One column spare: writing into the last column makes some terminals wrap.
        width = _width(self._stream) - 1
        return text if len(text) <= width else text[:max(width - 1, 0)] + "…"[:width]

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):
            # The terminal went away (a closed SSH session): the work goes on, unseen.
            self._live = False


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError, OSError):  # a closed or file-less stream
        return False


def _width(stream: TextIO) -> int:
    with contextlib.suppress(AttributeError, ValueError, OSError):
        columns = os.get_terminal_size(stream.fileno()).columns
        if columns > 0:
            return columns
    return _DEFAULT_WIDTH


def human_bytes(count: float) -> str:
    """``count`` bytes in binary units: ``512 B``, ``1.5 KiB``, ``10.0 GiB``."""
    if count < 1024:
        return f"{count:.0f} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        count /= 1024
        if count < 1024 or unit == "TiB":
            break
    return f"{count:.1f} {unit}"


def human_duration(seconds: float) -> str:
    """``0.4 s``, ``42 s``, ``3:05``, ``1:02:03``."""
    if seconds < 10:
        return f"{max(seconds, 0):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
