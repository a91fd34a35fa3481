"""The GPU-readiness script, run here as a GPU machine would run it, on the CPU with the tiny pipelines
(tests/tiny_pipelines.py): the adapter check, and the Ray-free packing harness (k trial processes, and one prior
service process for the shared placement). A GPU run differs only in the device, the full-size models, and k."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from dreamfusion.serving.batching import BATCHED_TOLERANCE

ROOT = Path(__file__).parents[3]
CPU_LAST_LINE = re.compile(
    r"cpu k=2 local_rss_mb=(\d+) shared_rss_mb=(\d+) shared_over_local_rss=([\d.]+) "
    r"identical_metrics=([01]) batched_max_abs_diff=([\d.e+-]+)"
)


def test_device_check_runs_both_scripts_and_prints_the_tables():
    """`benchmarks/device_check.sh` as a GPU machine runs it (its own interpreter, PYTHONPATH to the checkout, the
    installs skipped since everything is there), in its smoke mode: the adapter check, then the packing table at
    k = 2, local and shared (max batch 1 on a CPU: identical metrics, one request per call)."""
    env = {**os.environ, "PYTHON": sys.executable, "DEVICE_CHECK_SMOKE": "1"}
    done = subprocess.run(
        ["bash", "benchmarks/device_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    adapters = [line for line in lines if line.startswith(("| stable-diffusion", "| deepfloyd-if"))]
    assert len(adapters) == 2 and all(row.split("|")[8].strip() == "yes" for row in adapters)  # finite
    assert all(row.split("|")[10].strip() == "yes" for row in adapters)  # no prior parameter got a gradient
    assert "adapters ok=1" in lines
    packing = [[cell.strip() for cell in line.split("|")[1:3]] for line in lines if line.startswith("| 2 |")]
    assert packing == [["2", "local"], ["2", "shared"]]
    assert all(line.split("|")[-2].strip() == "1.00" for line in lines if line.startswith("| 2 | shared"))
    found = CPU_LAST_LINE.fullmatch(lines[-1])
    assert found, lines[-1]
    local_mb, shared_mb, ratio, identical, diff = found.groups()
    assert identical == "1"
    assert abs(float(ratio) - int(shared_mb) / int(local_mb)) < 0.01
    assert float(diff) <= BATCHED_TOLERANCE[torch.float32]
