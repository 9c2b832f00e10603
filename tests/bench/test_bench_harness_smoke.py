"""The benchmark harness still runs end to end: official server, official SDK, one workload, ~1 s."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = ROOT / ".cache/restate/node_modules/@restatedev/restate-server-linux-x64/bin/restate-server"


@pytest.mark.timeout(60)
def test_quick_run_on_official_server(tmp_path: Path) -> None:
    if not OFFICIAL.is_file():
        pytest.skip("official restate-server not installed (make official-restate)")
    out = tmp_path / "RESULTS.md"
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--quick",
            "--servers",
            "official",
            "--sdks",
            "official",
            "--workloads",
            "counter1hot",
            "--conc",
            "1",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--out",
            str(out),
            "--run-dir",
            str(tmp_path / "run"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert elapsed < 30, f"the smoke run took {elapsed:.1f}s"

    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["skipped"] == [] and doc["failed"] == []
    [point] = doc["results"]
    assert point["server"] == "official" and point["workload"] == "counter1hot"
    assert point["acked"] > 10 and point["errors"] == 0
    assert 0 < point["p50_ms"] <= point["p99_ms"]
    assert point["counter"]["ok"], point["counter"]
    for proc_name in ("server", "sdk"):
        assert point["usage"][proc_name]["cpu_s"] > 0
        assert point["usage"][proc_name]["peak_rss_mb"] > 10

    md = out.read_text()
    assert "Counter.add, 1 hot key" in md and "synchronous=FULL" in md and "cpus" in md
