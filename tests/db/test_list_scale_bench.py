"""bench/list_scale.py loads and lists on every engine (at a tiny size): its bulk loaders (COPY,
LOAD DATA LOCAL INFILE, batched inserts) and its scenarios stay working."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests import databases

BENCH = Path(__file__).parents[2] / "bench" / "list_scale.py"


@pytest.mark.parametrize("kind", databases.ENGINES)
def test_list_scale_runs(kind: str) -> None:
    if kind != "sqlite":
        try:
            databases.drop(databases.create(kind))
        except databases.ServerMissing as exc:
            pytest.skip(str(exc))
    result = subprocess.run(
        [sys.executable, str(BENCH), "--sizes", "300", "600", "--engines", kind,
         "--limit", "20", "--repeat", "1"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for run in report["results"]:
        rows = dict(run["rows"])
        assert rows.pop("filter_status_killed_none") == 0
        assert set(rows.values()) == {20}, rows  # every other scenario lists a full page
    assert "tenant_visible_last_page" in report["growth_300_to_600"][kind]
