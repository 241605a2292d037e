"""A process's incarnation: its lock file tells the node's other processes whether it is
still running, whatever way it ended."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from glimpse.incarnation import DIRECTORY, Incarnation, node_name

HOLD = """
import sys, time
from pathlib import Path
from glimpse.incarnation import Incarnation
me = Incarnation(Path(sys.argv[1]))
print(me.incarnation, flush=True)
time.sleep(60)
"""


def test_a_live_incarnation_is_not_ended_and_a_killed_one_is(tmp_path: Path) -> None:
    me = Incarnation(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        other = child.stdout.readline().strip()
        assert len(other) == 32 and other != me.incarnation
        assert not me.ended(other)
        assert me.forget_ended() == 0  # a live one's file stays
        assert (tmp_path / DIRECTORY / f"{other}.lock").exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert me.ended(other)
    assert me.forget_ended() == 1
    assert not (tmp_path / DIRECTORY / f"{other}.lock").exists()
    # Its file gone, it is still known ended.
    assert me.ended(other)
    me.close()


def test_incarnations_in_one_process_see_each_other_live(tmp_path: Path) -> None:
    """flock belongs to the open file: two incarnations of one process (tests build several
    apps) do not take each other for dead."""
    first, second = Incarnation(tmp_path), Incarnation(tmp_path)
    assert first.node == second.node and first.incarnation != second.incarnation
    assert not first.ended(second.incarnation) and not second.ended(first.incarnation)
    assert not first.ended(first.incarnation)
    second.close()
    assert first.ended(second.incarnation)
    first.close()


def test_probers_at_the_same_moment_both_see_a_dead_incarnation_ended(tmp_path: Path) -> None:
    """The upload and import sweepers of a restarted process probe its predecessor together;
    one's probe must not make the other take the dead incarnation for a live one."""
    me = Incarnation(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    gone = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    fd = os.open(tmp_path / DIRECTORY / f"{gone}.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # another prober, mid-probe
        assert me.ended(gone)
        assert me.forget_ended() == 1
    finally:
        os.close(fd)
    me.close()


def test_what_is_not_an_incarnation_id_is_left_to_the_timeout(tmp_path: Path) -> None:
    me = Incarnation(tmp_path)
    assert not me.ended("../../etc/passwd")
    assert not me.ended("")
    assert me.ended("0" * 32)  # an id of ours with no file: ended (its file was removed)
    me.close()


def test_a_temporary_file_of_a_process_that_died_starting_is_removed_late(
        tmp_path: Path) -> None:
    me = Incarnation(tmp_path)
    fresh = tmp_path / DIRECTORY / f".{'1' * 32}.tmp"
    old = tmp_path / DIRECTORY / f".{'2' * 32}.tmp"
    fresh.touch()
    old.touch()
    past = time.time() - 3600
    os.utime(old, (past, past))
    assert me.forget_ended() == 1
    assert fresh.exists() and not old.exists()
    me.close()


def test_a_node_is_its_host_and_data_directory(tmp_path: Path) -> None:
    assert node_name("h", tmp_path / "a") != node_name("h", tmp_path / "b")
    assert node_name("h", tmp_path / "a") != node_name("g", tmp_path / "a")
    assert node_name("h", tmp_path / "a") == node_name("h", tmp_path / "x" / ".." / "a")
    assert len(node_name("h" * 300, tmp_path)) <= 255
