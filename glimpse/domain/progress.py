"""How a long operator task (an audit, a scrub) tells whoever watches how far it has got,
from its own iteration: the count it works through is the one it reports, never a second
listing made for the display. glimpse.cli.progress.Progress draws it on a terminal."""

from __future__ import annotations

from typing import Protocol


class ProgressObserver(Protocol):
    def phase(self, label: str, total_items: int | None = None,
              total_bytes: int | None = None, unit: str = "items") -> None:
        """A new stage of the task begins; totals when known (None: counted as it goes)."""
        ...

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        """``items`` more done, and ``nbytes`` more bytes (a chunk read counts before its
        item is done)."""
        ...


class NoProgress:
    """Nobody watching."""

    def phase(self, label: str, total_items: int | None = None,
              total_bytes: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        pass


NO_PROGRESS: ProgressObserver = NoProgress()
