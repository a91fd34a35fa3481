"""`df-sweep schedules`: every schedule's t per step for a prior's noise schedule, read without its weights, as CSV
and a plot; DreamTime's rows pinned against the paper's walk computed independently (tests/schedule_reference.py)."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np
from PIL import Image
from schedule_reference import dreamtime_weight, linear_alphas_cumprod, plateau, sd_alphas_cumprod, time_prioritized
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.registry import names


def _csv(stdout: str) -> tuple[list[str], dict[str, list[tuple[int, int]]]]:
    reader = csv.reader(io.StringIO(stdout))
    header = next(reader)
    rows: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for name, step, t in reader:
        rows[name].append((int(step), int(t)))
    return header, rows


def test_stable_diffusion_csv_is_the_published_dreamtime(tmp_path):
    """The command of the issue's 'done when': SD's schedule from the shipped config, no weights anywhere."""
    result = CliRunner().invoke(
        app, ["schedules", "--prior", "stable-diffusion", "--steps", "10000", "--csv", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    header, rows = _csv(result.stdout)
    assert header == ["schedule", "step", "t"]
    assert sorted(rows) == names("schedule")
    for series in rows.values():
        assert [step for step, _ in series] == list(range(10_000))
        assert all(20 <= t <= 980 for _, t in series)
    ab = sd_alphas_cumprod()
    assert [t for _, t in rows["dreamtime"]] == time_prioritized(dreamtime_weight(ab), 20, 980, 10_000)
    assert rows["dreamtime"][5000] == (5000, 832)
    assert [t for _, t in rows["dreamtime_plateau"]] == time_prioritized(plateau(), 20, 980, 10_000)
    with Image.open(tmp_path / "schedules.png") as im:
        assert im.format == "PNG" and im.width > 600
    assert f"plot: {tmp_path / 'schedules.png'}" in result.stderr


def test_the_toy_prior_schedule_and_the_summary_table(tmp_path):
    """The default prior is the toy world's, whose linear-β ᾱ gives W_d a steeper rise: DreamTime's t runs up to 280
    steps above the plateau-only walk there. Without --csv: a table of t at 0/25/50/75% and the last step."""
    result = CliRunner().invoke(app, ["schedules", "--steps", "400", "--set", "seed=3", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "toyworld, T=1000, 400 steps, seed 3"
    faithful = time_prioritized(dreamtime_weight(linear_alphas_cumprod()), 20, 980, 400)
    row = next(line.split() for line in lines if line.startswith("dreamtime@2"))
    assert [int(v) for v in row[1:]] == [faithful[i] for i in (0, 100, 200, 300, 399)]
    gap = np.array(faithful) - np.array(time_prioritized(plateau(), 20, 980, 400))
    assert gap.min() >= 0 and 250 < gap.max() <= 280
    assert lines[-1] == f"plot: {tmp_path / 'schedules.png'}"


def test_a_checkpoint_without_a_known_schedule_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["schedules", "--prior", "someone/some-model", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.startswith("error: prior.model: the noise schedule of 'someone/some-model' is not shipped")
    assert result.output.count("\n") == 1 and not (tmp_path / "schedules.png").exists()
