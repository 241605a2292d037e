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


@pytest.mark.parametrize("kind", databases.ENGINES)
def test_list_scale_v2_mode_runs(kind: str) -> None:
    """--api v2 loads the v2 mix (members and tags too) and runs its scenarios; --explain
    prints a plan for each."""
    if kind != "sqlite":
        try:
            databases.drop(databases.create(kind))
        except databases.ServerMissing as exc:
            pytest.skip(str(exc))
    result = subprocess.run(
        [sys.executable, str(BENCH), "--api", "v2", "--sizes", "600", "--engines", kind,
         "--limit", "20", "--repeat", "1", "--explain"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)["results"]
    rows = run["rows"]
    pages = [name for name in rows if name.endswith(("_page", "_common", "_in"))]
    assert len(pages) >= 11
    assert {rows[name] for name in pages} == {20}, rows
    assert rows["v2_admin_tag_rare"] == 1  # one image in a thousand
    assert 0 < rows["v2_admin_hidden"] < 20  # one in fifty
    assert result.stderr.count("-- ") == len(rows)  # a plan per scenario
