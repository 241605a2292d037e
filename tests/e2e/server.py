"""Start and stop real ``glimpse serve`` processes for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests import ceph, swift_aio


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class GlimpseServer:
    """One ``glimpse serve`` process on a free loopback port with its own data directory.

    ``settings`` are setting names (as in docs/configuration.md) mapped to values; they are
    passed as ``GLIMPSE_<NAME>`` environment variables, exactly as an operator would.
    ``config``: a TOML settings file (``--config``), for what only a file can say (several
    store tables); its stores are then the test's own, so GLIMPSE_TEST_STORE does not apply.
    """

    def __init__(self, settings: dict[str, str] | None = None, data_dir: Path | None = None,
                 config: Path | None = None, launcher: list[str] | None = None):
        """``config``: a TOML settings file (``--config``), for what variables cannot say
        (several stores). ``launcher``: what runs instead of ``-m glimpse`` (a benchmark's
        wrapper of it)."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="glimpse-e2e-")
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
        env["GLIMPSE_DATA_DIR"] = str(self.data_dir)
        # Tests stop servers with uploads still open: do not wait the default 30 s for them.
        env["GLIMPSE_SHUTDOWN_GRACE_PERIOD"] = "2"
        # Lets location/copy-from tests reach a test HTTP server on loopback (spec §17).
        env["GLIMPSE_EXTERNAL_ALLOWED_NETWORKS"] = "127.0.0.0/8"
        test_db = os.environ.get("GLIMPSE_TEST_DATABASE_URL")
        if test_db:
            env["GLIMPSE_DATABASE_URL"] = test_db
        # GLIMPSE_TEST_STORE=swift|s3|rbd runs every server with that store as the default.
        test_store = "file" if config else os.environ.get("GLIMPSE_TEST_STORE", "file")
        if test_store == "rbd":
            ceph.require()
            for name, value in ceph.store_env().items():
                env[f"GLIMPSE_{name.upper()}"] = value
        elif test_store != "file":
            swift_aio.require()
            for name, value in swift_aio.store_env(test_store).items():
                env[f"GLIMPSE_{name.upper()}"] = value
        for name, value in (settings or {}).items():
            env[f"GLIMPSE_{name.upper()}"] = str(value)
        # The metrics listener (docs/operations.md), when the settings turn it on.
        metrics_port = (settings or {}).get("metrics_port")
        self.metrics_url = f"http://127.0.0.1:{metrics_port}" if metrics_port else ""
        # What the server was started with: an operator's commands on its node read the same.
        self.env = dict(env)
        self.log_path = self.data_dir / "server.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, *(launcher or ["-m", "glimpse"]), "serve", "--port", str(self.port),
             *(["--config", str(config)] if config is not None else [])],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        # One client for the whole wait: httpx.get builds a client (and its TLS context) per
        # call, about 20 ms of CPU, which every 50 ms took a third of a core from the server
        # starting beside it (and from every other test process).
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"glimpse exited early:\n{self.log()}")
                try:
                    if client.get(self.url + "/versions").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        log = self.log()  # before stop() closes it
        self.stop()
        raise RuntimeError(f"glimpse did not become ready:\n{log}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        if self._tmp is not None:
            self._tmp.cleanup()
