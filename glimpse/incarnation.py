"""This process's incarnation: the identity recorded on the uploads and imports it claims, and
how a process tells whether another incarnation of its node is still running.

A node is a host and its data directory. Every API process (each uvicorn worker, and each
worker a supervisor starts again) is a new incarnation: a random id, and a lock file
``<data_dir>/incarnations/<id>.lock`` it holds an exclusive ``flock`` on for as long as it
lives. The kernel drops that lock when the process ends, however it ends (SIGKILL, OOM
killer), so another process of the node that can take the lock knows the incarnation is dead,
at once and without a clock. A live sibling worker's lock cannot be taken: its uploads are
left alone. Other nodes' incarnations are never judged here (their lock files are not ours
to see); their uploads stay under the heartbeat timeout.

The lock is held by an open file description: a child made with fork() would hold it too,
so the file is opened close-on-exec (children glimpse runs exec at once).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import logging
import os
import re
import socket
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

DIRECTORY = "incarnations"
_ID = re.compile(r"[0-9a-f]{32}")
# A lock file is written under a temporary name and renamed once locked (see _hold): one
# left by a process that died in between is removed after this long.
_TEMPORARY_GRACE = 60.0


def node_name(host: str, data_dir: Path) -> str:
    """A node's name: its host, and a digest of its data directory (two servers on one host
    with different data directories are two nodes; the digest keeps the name short)."""
    place = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return f"{host[:200]}/{place}"


class Incarnation:
    """This process's incarnation on its node (glimpse.domain.ports.ProcessIdentity)."""

    def __init__(self, data_dir: Path, host: str | None = None) -> None:
        self._directory = data_dir / DIRECTORY
        self._node = node_name(host if host is not None else socket.gethostname(), data_dir)
        self._id = uuid.uuid4().hex
        self._fd = self._hold()

    @property
    def node(self) -> str:
        return self._node

    @property
    def incarnation(self) -> str:
        return self._id

    def _hold(self) -> int:
        """Create and lock this incarnation's file. Locked under a temporary name, then renamed:
        a prober never sees a lock file that is not locked yet (it would take it for a dead
        incarnation's and remove it)."""
        self._directory.mkdir(parents=True, exist_ok=True)
        temporary = self._directory / f".{self._id}.tmp"
        fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n".encode())
            os.replace(temporary, self._directory / f"{self._id}.lock")
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        return fd

    def ended(self, incarnation: str) -> bool:
        if incarnation == self._id:
            return False
        if not _ID.fullmatch(incarnation):
            # Not an id this code writes: not a file name to open; the timeout decides.
            return False
        try:
            fd = os.open(self._directory / f"{incarnation}.lock", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            # Removed once its process had ended (forget_ended), or the data directory was
            # replaced: a live incarnation's file exists from before its first claim.
            return True
        try:
            return _lockable(fd)
        finally:
            os.close(fd)

    def forget_ended(self) -> int:
        """Remove the lock files of ended incarnations (and temporary ones left by a process
        that died while starting); how many."""
        removed = 0
        try:
            entries = list(self._directory.iterdir())
        except FileNotFoundError:
            return 0
        for path in entries:
            if path.suffix == ".lock" and path.stem != self._id:
                with contextlib.suppress(FileNotFoundError):
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        # Removed while locked: a prober that opened it before sees it
                        # lockable once this closes it, which is the truth.
                        if _lockable(fd):
                            path.unlink(missing_ok=True)
                            removed += 1
                    finally:
                        os.close(fd)
            elif path.suffix == ".tmp":
                with contextlib.suppress(FileNotFoundError):
                    if time.time() - path.stat().st_mtime > _TEMPORARY_GRACE:
                        path.unlink(missing_ok=True)
                        removed += 1
        return removed

    def close(self) -> None:
        """Give the lock up (a clean exit; the kernel does it for any other)."""
        with contextlib.suppress(OSError):
            (self._directory / f"{self._id}.lock").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self._fd)


@dataclasses.dataclass(frozen=True)
class Sighting:
    """An incarnation of a node as its lock file shows it (``glimpse status``)."""

    id: str
    pid: int | None  # as the process wrote it; None when unreadable
    alive: bool  # its process still holds the lock


def survey(data_dir: Path) -> list[Sighting]:
    """The incarnations of the node of ``data_dir`` whose lock files are there: those running,
    and those ended that no process has forgotten yet. Looks only: creates and removes
    nothing."""
    try:
        entries = sorted((data_dir / DIRECTORY).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for path in entries:
        if path.suffix != ".lock" or not _ID.fullmatch(path.stem):
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:  # forgotten meanwhile
            continue
        try:
            alive = not _lockable(fd)
            pid_text = os.read(fd, 32).decode("ascii", "replace").strip()
        finally:
            os.close(fd)
        found.append(Sighting(path.stem, int(pid_text) if pid_text.isdigit() else None, alive))
    return found


def _lockable(fd: int) -> bool:
    """Whether no incarnation holds the lock of ``fd``'s file (a shared lock, taken and let go
    again if so). Shared: probers must not take each other for the owner. Two sweepers of one
    process probe the same dead incarnation at start-up, and with exclusive probes the one
    that came second saw the first one's probe and judged the dead incarnation alive, leaving
    its import to the heartbeat timeout (minutes) instead of ending it at once."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    fcntl.flock(fd, fcntl.LOCK_UN)
    return True
