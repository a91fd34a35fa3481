"""The GPU-readiness scripts, run here as a GPU machine would run them, on the CPU with the tiny pipelines
(tests/tiny_pipelines.py): the Ray-free packing harness (k trial processes, and one prior service process for the
shared placement) and the adapter check. A GPU run differs only in the device and the full-size models."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from dreamfusion.priors.batching import BATCHED_TOLERANCE

ROOT = Path(__file__).parents[3]
CPU_LAST_LINE = re.compile(
    r"cpu k=2 local_rss_mb=(\d+) shared_rss_mb=(\d+) shared_over_local_rss=([\d.]+) "
    r"identical_metrics=([01]) batched_max_abs_diff=([\d.e+-]+)"
)


def _run(script: str, *args: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}
    done = subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip().splitlines()


def test_packing_harness_runs_local_and_shared_trials_and_they_agree():
    lines = _run("gpu_packing.py", "--cpu", "--tiny", "--ks", "2", "--steps", "2")
    rows = [line for line in lines if line.startswith("| 2 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["local", "shared"]
    assert rows[1].split("|")[-2].strip() == "1.00"  # max batch 1 on a CPU: every request alone
    found = CPU_LAST_LINE.fullmatch(lines[-1])
    assert found, lines[-1]
    local_mb, shared_mb, ratio, identical, diff = found.groups()
    assert identical == "1"
    assert abs(float(ratio) - int(shared_mb) / int(local_mb)) < 0.01
    assert float(diff) <= BATCHED_TOLERANCE[torch.float32]


def test_adapter_check_takes_sds_steps_through_both_adapters():
    lines = _run("adapter_check.py", "--cpu", "--tiny", "--steps", "2")
    rows = [line for line in lines if line.startswith("| stable-diffusion") or line.startswith("| deepfloyd-if")]
    assert len(rows) == 2 and all(row.split("|")[8].strip() == "yes" for row in rows)  # finite
    assert lines[-1] == "adapters ok=1"
