"""Short coverage-guided runs of every atheris target (fuzz/fuzz_targets.py): a finding fails the test with
the crashing input's file. Longer runs: see fuzz/README.md."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_counts import count

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "fuzz" / "fuzz_targets.py"
SECONDS = max(1, int(float(os.environ.get("PYRESTATE_FUZZ_SCALE", "1"))))


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "target",
    ["frame_decoder", "ingress_path", "duration", "json_body", "ingress_app", "admin_app", "http_front"],
)
def test_atheris_target_finds_nothing(target: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            target,
            f"-max_total_time={SECONDS}",
            f"-artifact_prefix={tmp_path}/",
            "-print_final_stats=0",
        ],
        capture_output=True,
        text=True,
        timeout=110,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert proc.returncode == 0 and not crashes, f"{target}: {crashes}\n{output[-6000:]}"
    runs = re.search(r"Done (\d+) runs", output)
    assert runs is not None, output[-3000:]
    assert int(runs.group(1)) > 100
    count(f"atheris_{target}", int(runs.group(1)))
