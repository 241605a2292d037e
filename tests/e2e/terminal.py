"""Running a real ``glimpse`` command as an operator does: on a terminal (a pty), or with its
output piped, as cron jobs and scripts do."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

# Every escape glimpse's progress line uses: a carriage return and erase-to-end-of-line.
ERASE = "\x1b[K"


def glimpse_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env["GLIMPSE_DATA_DIR"] = str(data_dir)
    test_db = os.environ.get("GLIMPSE_TEST_DATABASE_URL")
    if test_db:
        env["GLIMPSE_DATABASE_URL"] = test_db
    env.update({f"GLIMPSE_{k.upper()}": v for k, v in settings.items()})
    return env


def in_terminal(args: list[str], env: dict[str, str], columns: int = 160,
                timeout: float = 60.0, type_when: tuple[str, bytes] | None = None,
                ) -> tuple[int, str]:
    """Run ``glimpse *args`` with a pty as its stdin, stdout and stderr; its exit code and
    everything it wrote (the pty's "\\r\\n" line ends as "\\n"). ``type_when``: (text,
    keys): once ``text`` has appeared, the keys are typed (b"\\x03": Ctrl-C)."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**env, "TERM": "xterm"}
    try:
        process = subprocess.Popen([sys.executable, "-m", "glimpse", *args], env=env,
                                   stdin=terminal, stdout=terminal, stderr=terminal,
                                   preexec_fn=_take_terminal)
    finally:
        os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: every holder of the terminal's end has closed it
                break
            if not chunk:
                break
            chunks.append(chunk)
            if type_when is not None and type_when[0].encode() in b"".join(chunks):
                os.write(controller, type_when[1])
                type_when = None
        code = process.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def _take_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pty (its stdin),
    as a login shell's commands have: Ctrl-C typed there is its SIGINT. Its SIGINT is
    restored to the default, as a shell does for a command it runs in the foreground: a test
    run started in the background of a shell without job control (as CI may be) inherits
    SIGINT ignored, and Python then never turns Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def piped(args: list[str], env: dict[str, str],
          timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glimpse", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
