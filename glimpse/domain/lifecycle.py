"""The image status machine: which status may follow which. Every status change in glimpse is
checked here, then written as a compare-and-swap on the status it was decided on
(``ImageRepository.set_fields``/``update`` with ``expected_status``).

A failed upload ends differently by API: v1 shows it ``killed`` (the image is spent), v2 puts
it back to ``queued`` for another try. Both are edges of the one table; the caller names which
with a ``FailureRule``.
"""

from __future__ import annotations

import enum

from glimpse.domain.model import Status
from glimpse.errors import Conflict

TRANSITIONS: dict[Status, frozenset[Status]] = {
    # -> killed: v1's upload refused by a quota before its claim (the image is spent, as
    # when its data fails).
    Status.QUEUED: frozenset(
        {Status.SAVING, Status.UPLOADING, Status.IMPORTING, Status.ACTIVE, Status.DELETED,
         Status.KILLED}
    ),
    Status.SAVING: frozenset(
        {Status.ACTIVE, Status.KILLED, Status.QUEUED, Status.DELETED, Status.PENDING_DELETE}
    ),
    Status.UPLOADING: frozenset({Status.IMPORTING, Status.QUEUED, Status.DELETED}),
    Status.IMPORTING: frozenset({Status.ACTIVE, Status.QUEUED, Status.KILLED, Status.DELETED}),
    # -> killed: only the operator's store repair, for data found missing or damaged.
    Status.ACTIVE: frozenset(
        {Status.DEACTIVATED, Status.DELETED, Status.PENDING_DELETE, Status.KILLED}
    ),
    Status.DEACTIVATED: frozenset(
        {Status.ACTIVE, Status.DELETED, Status.PENDING_DELETE, Status.KILLED}
    ),
    Status.KILLED: frozenset({Status.DELETED}),
    Status.PENDING_DELETE: frozenset({Status.DELETED}),
    Status.DELETED: frozenset(),
}


class FailureRule(enum.Enum):
    """Where an image goes when its data fails to arrive."""

    KILL = Status.KILLED  # v1: the image is spent
    REQUEUE = Status.QUEUED  # v2: it may be uploaded again

    @property
    def status(self) -> Status:
        return Status(self.value)


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Status, target: Status) -> Status:
    """``target``, or Conflict if it may not follow ``current``."""
    if not can_transition(current, target):
        raise Conflict(f"Image status cannot change from {current} to {target}")
    return target
