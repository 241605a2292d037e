"""The project's benchmark harness runs end to end against a live server (at tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import keystone
from tests.e2e.server import GlimpseServer

BENCH = Path(__file__).parents[2] / "bench" / "glimpse_bench.py"


SCENARIOS = ("upload_1g", "download_1g", "upload_small", "head_rps", "list_1000")
TINY = ["--rounds", "1", "--big-mib", "4", "--small-count", "10", "--head-seconds", "1",
        "--list-images", "30"]


def run_bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    return run_bench_output(tmp_path, *args)[0]


def run_bench_output(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """The --json document and the tables (stdout) of a run that passed."""
    out = tmp_path / "run.json"
    result = subprocess.run(
        [sys.executable, str(BENCH), *TINY, "--data-dir", str(tmp_path / "data"),
         "--json", str(out), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(out.read_text())
    assert document["failed"] is None
    return document, result.stdout


def test_bench_smoke(tmp_path: Path) -> None:
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    try:
        document = run_bench(tmp_path, "--url", srv.url)
        for scenario in SCENARIOS:
            assert document["results"][scenario]["A"], scenario  # samples were taken
    finally:
        srv.stop()


def test_bench_v2_against_v1(tmp_path: Path) -> None:
    """glimpse's two adapters side by side on one server, with the v2 client the benchmark
    uses for Glance; every v2 image must carry the sha512 multihash of its data."""
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    identity = ["X-Tenant-Id: bench", "X-Roles: admin"]
    try:
        document = run_bench(
            tmp_path, "--url", srv.url, "--api", "v2",
            *(f"--header={h}" for h in identity),
            "--url-b", srv.url, "--api-b", "v1", *(f"--header-b={h}" for h in identity),
            "--multihash", "sha512",
        )
        assert document["targets"]["A"].startswith(f"A: {srv.url} (API v2")
        for scenario in SCENARIOS:
            assert document["results"][scenario]["A"], scenario
            assert document["results"][scenario]["B"], scenario
    finally:
        srv.stop()


def test_bench_refuses_another_multihash(tmp_path: Path) -> None:
    """The multihash check is real: asking for sha256 from a server that uses sha512 fails."""
    srv = GlimpseServer(data_dir=tmp_path / "srv")
    try:
        result = subprocess.run(
            [sys.executable, str(BENCH), *TINY, "--data-dir", str(tmp_path / "data"),
             "--url", srv.url, "--api", "v2", "--header", "X-Tenant-Id: bench",
             "--multihash", "sha256", "upload_small"],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 2, result.stdout + result.stderr
        assert "os_hash_algo 'sha512' != 'sha256'" in result.stderr
    finally:
        srv.stop()


def keystone_cost_run(tmp_path: Path, cache_seconds: int) -> tuple[dict[str, Any], str, int]:
    """head_rps against a noauth glimpse (A) and a keystone-mode glimpse with two workers (B)
    in one run, B's Keystone calls counted by a proxy's access log: the run's document, its
    tables, and the token validations B made while the benchmark ran."""
    access_log = tmp_path / "keystone-access.log"
    proxy = keystone.CountingProxy(access_log)
    plain = GlimpseServer(data_dir=tmp_path / "plain")
    in_keystone_mode = GlimpseServer(keystone.glimpse_settings(
        keystone_auth_url=proxy.auth_url, workers=2, token_cache_time=cache_seconds,
        log_level="debug"), data_dir=tmp_path / "keystone")
    try:
        document, tables = run_bench_output(
            tmp_path, "head_rps", "--head-seconds", "3", "--api", "v2",
            "--url", plain.url, "--header", "X-Tenant-Id: bench", "--header", "X-Roles: admin",
            "--url-b", in_keystone_mode.url, "--keystone-token-b",
            "--keystone-url", keystone.AUTH_URL, "--keystone-user", keystone.ADMIN_USER,
            "--keystone-password", keystone.ADMIN_PASSWORD,
            "--keystone-project", keystone.ADMIN_PROJECT, "--keystone-log", str(access_log))
        log = in_keystone_mode.log()
    finally:
        plain.stop()
        in_keystone_mode.stop()
        proxy.close()
    assert keystone.TOKEN_MARK not in log + tables + json.dumps(document)
    assert keystone.ADMIN_PASSWORD not in tables + json.dumps(document)
    validations = document["results"]["head_rps"]["B"]["ks_validations"]
    return document, tables, int(sum(validations))


def test_bench_keystone_cost(tmp_path: Path) -> None:
    """Identity spec case 14, at tiny sizes: the benchmark runs head_rps with a real token
    against glimpse in keystone mode beside a noauth glimpse, reports what keystone mode adds
    per request, and counts Keystone's validations: one per token per worker per cache time.
    Here the cache outlives the run: at most one validation per worker, whatever the load."""
    keystone.require_identity()
    document, tables, timed = keystone_cost_run(tmp_path, cache_seconds=300)
    assert document["keystone_mode"] == {"A": False, "B": True}
    assert "headers X-Auth-Token: <token sha256:" in document["targets"]["B"]
    assert "keystone mode's cost per head_rps request: B (keystone mode) less A" in tables
    assert "goal, a cache hit adds at most 0.1 ms of server CPU:" in tables
    total = int(tables.split("# Keystone validations (GET /v3/auth/tokens in ")[1]
                .split("): ")[1].split(" ")[0])
    # Each worker validates the token on its first request and never again.
    assert 1 <= total <= 2, tables
    assert timed <= total
    assert document["results"]["head_rps"]["B"]["requests"][0] > 10 * total


def test_bench_keystone_validations_per_cache_time(tmp_path: Path) -> None:
    """With a one-second cache, 3 s of 32 concurrent connections make a validation per worker
    per second or so, not one per request nor one per waiting request (single flight)."""
    keystone.require_identity()
    document, tables, timed = keystone_cost_run(tmp_path, cache_seconds=1)
    requests = document["results"]["head_rps"]["B"]["requests"][0]
    assert 2 <= timed <= 2 * (3 + 2), tables
    assert requests > 20 * timed, tables


def test_keystone_hit_smoke() -> None:
    """bench/keystone_hit.py, the in-process measure of a cache hit, runs (tiny sizes) and asks
    its stand-in Keystone once."""
    result = subprocess.run(
        [sys.executable, str(BENCH.parent / "keystone_hit.py"), "--calls", "50", "--rounds", "1"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "keystone mode adds" in result.stdout
    assert "Keystone was asked once" in result.stdout
