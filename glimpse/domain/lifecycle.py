"""The image status machine (spec §7): which status may follow which."""

from __future__ import annotations

from glimpse.domain.model import Status
from glimpse.errors import Conflict

TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.SAVING, Status.ACTIVE, Status.DELETED}),
    Status.SAVING: frozenset(
        {Status.ACTIVE, Status.KILLED, Status.DELETED, Status.PENDING_DELETE}
    ),
    Status.ACTIVE: frozenset({Status.DEACTIVATED, Status.DELETED, Status.PENDING_DELETE}),
    Status.DEACTIVATED: frozenset({Status.ACTIVE, Status.DELETED, Status.PENDING_DELETE}),
    Status.KILLED: frozenset({Status.DELETED}),
    Status.PENDING_DELETE: frozenset({Status.DELETED}),
    Status.DELETED: frozenset(),
}


def can_transition(current: Status, target: Status) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: Status, target: Status) -> None:
    if not can_transition(current, target):
        raise Conflict(f"Image status cannot change from {current} to {target}")
