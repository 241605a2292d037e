"""The schema upgrade a server runs before it serves, as a process of its own.

Alembic and what it imports (about 9 MiB resident) would stay in a server process for its whole
life once loaded, so ``glimpse serve`` upgrades the schema in a child: ``python -m
glimpse.db.upgrade_process``, given the database URL and log format on stdin, never on its
command line, where any local user could read a password in the URL. A plain child process, not
``multiprocessing``: its spawn start method leaves a resource tracker process beside the server
for as long as the server lives (13 MiB resident, measured).
"""

from __future__ import annotations

import json
import subprocess
import sys

from glimpse import log_format
from glimpse.db import engine as db_engine


def run(url: str, form: str) -> int:
    """Upgrade the schema at ``url`` in a child process; its exit code (0: done)."""
    request = json.dumps({"url": url, "log_format": form})
    return subprocess.run(
        [sys.executable, "-m", __name__], input=request, text=True, check=False
    ).returncode


def main() -> None:
    request = json.loads(sys.stdin.read())
    log_format.configure("warning", request["log_format"])
    db_engine.upgrade(db_engine.create_engine(request["url"]))


if __name__ == "__main__":
    main()
