"""The project's benchmark harness runs end to end against a live server (at tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.server import GlimpseServer

BENCH = Path(__file__).parents[2] / "bench" / "glimpse_bench.py"


def test_bench_smoke(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    try:
        out = tmp_path / "run.json"
        result = subprocess.run(
            [sys.executable, str(BENCH), "--url", srv.url, "--rounds", "1", "--big-mib", "4",
             "--small-count", "10", "--head-seconds", "1", "--list-images", "30",
             "--data-dir", str(tmp_path / "data"), "--json", str(out)],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        document = json.loads(out.read_text())
        assert document["failed"] is None
        for scenario in ("upload_1g", "download_1g", "upload_small", "head_rps", "list_1000"):
            assert document["results"][scenario]["A"], scenario  # samples were taken
    finally:
        srv.stop()
