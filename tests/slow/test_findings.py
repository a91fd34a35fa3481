"""scripts/findings.py end to end on tiny trials (`--quick`, one seed each: 27 trials of the real toyworld prior,
several minutes on 2 cores): both sweeps launch, both reports land, and the closing line carries the numbers the
findings quote (docs/results/flagship.md). Slow tier: CI skips it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).parents[2]


def test_findings_script_reproduces_both_reports(tmp_path):
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, str(ROOT / "scripts" / "findings.py"), "--quick", "--timesteps-seeds", "1"]
    result = subprocess.run(
        [*command, "--guidance-seeds", "1", "--out", "out"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(
        r"findings timesteps_trials=15 timesteps_halfwidth_max=\S+ guidance_trials=12 colour_error_trend=\S+ "
        r"minutes=\d+\.\d",
        last,
    ), last
    for name, axis in (("timesteps", "sds.timesteps.schedule"), ("guidance", "sds.guidance_scale")):
        comparisons = pd.read_csv(tmp_path / "out" / name / "comparisons.csv")
        assert axis in set(comparisons["axis"])
        assert (tmp_path / "out" / name / "report.html").is_file()
    trends = pd.read_csv(tmp_path / "out" / "guidance" / "trends.csv")
    assert ((trends["axis"] == "sds.guidance_scale") & (trends["metric"] == "gt_colour_error")).any()
