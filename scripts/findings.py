"""Reproduce the findings (docs/results/flagship.md; the method in docs/guide/reports.md): launch the flagship
(`sweeps/timesteps.yaml`) and the guidance ladder (`sweeps/guidance.yaml`) with more seeds, report each (its newest
launch only), and print what they found.

    python scripts/findings.py [--timesteps-seeds N] [--guidance-seeds N] [--out DIR] [--quick] [--set k=v]...

It is `df-sweep launch` and `df-sweep report` and nothing else: the verdicts are the reports' (paired sign-flip
tests, Holm-adjusted); this script only picks the seeds and reads the CSVs back. Runs in the current directory
(./mlruns.db, ./ray_results) like the CLI. `--quick` shrinks every trial (tiny NeRF, 16 px, 30 steps) to check the
pipeline end to end in minutes; its numbers mean nothing. The last line is
`findings timesteps_trials=… timesteps_halfwidth_max=… guidance_trials=… colour_error_trend=… minutes=…`. It writes
the results page docs/results/flagship.md (not with `--quick`; `--results-dir`, `--no-page`: see
benchmarks/results_page.py) with each report's summary, the flagship's comparisons plot and the numbers above.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the results page writer, shared with the benchmarks

from results_page import ResultsPage, add_arguments, report_summary, runs_prior  # noqa: E402

DF_SWEEP = [sys.executable, "-m", "dreamfusion.cli"]
QUICK = [
    "base.steps=30",
    "base.checkpoint_every=30",
    "base.nerf.size=tiny",
    "base.render.resolution=16",
    "base.render.samples_per_ray=16",
    "base.eval.every=30",
    "base.eval.views=2",
    "base.eval.turntable_frames=4",
]
TARGET_HALFWIDTH = 0.02  # the bar for each schedule's mean gt_iou: its 95% half-width
INTRO = """
Which timestep schedule gives the best `gt_iou` (the exact 3D score) at equal compute, and does colour error rise
with guidance? The flagship sweep (`sweeps/timesteps.yaml`: 5 schedules × 3 prompts × the seeds below, 400 steps)
and the guidance ladder (`sweeps/guidance.yaml`: 6 scales × 2 prompts × the seeds below), each reported by
`df-sweep report` on its newest launch: every comparison paired over (prompt, seed) blocks and Holm-adjusted
([how the verdicts are reached](../guide/reports.md#reading-the-verdicts)). The report's own summary follows each.
"""


def run(command: list[str]) -> None:
    print("$ " + " ".join(command[2:] if command[:2] == DF_SWEEP[:2] else command), flush=True)
    subprocess.run(command, check=True)


def launch_and_report(spec: str, name: str, seeds: int, sets: list[str], out: Path) -> pd.DataFrame:
    """One launch with seeds 0..seeds−1, then the report of that launch alone; its trials back."""
    overrides = [f"space.seed.grid=[{','.join(map(str, range(seeds)))}]", *sets]
    run([*DF_SWEEP, "launch", str(ROOT / spec), *(arg for s in overrides for arg in ("--set", s))])
    run([*DF_SWEEP, "report", f"{name}@-1", "--out", str(out / name)])
    return pd.read_csv(out / name / "trials.csv")


def halfwidths(trials: pd.DataFrame, by: str, metric: str) -> pd.DataFrame:
    """Each level's mean and 95% t half-width over its trials (prompts × seeds), as the report's tables give."""
    rows = []
    for level, g in trials[trials["status"] == "FINISHED"].groupby(by, sort=False):
        v = g[metric].dropna()
        half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)) if len(v) > 1 else math.nan
        rows.append({by: level, "n": len(v), "mean": v.mean(), "halfwidth": half})
    return pd.DataFrame(rows)


def seeds_for(table: pd.DataFrame, trials_per_seed: int) -> int:
    """Seeds at which the widest half-width would reach the target (it shrinks as 1/√n)."""
    worst = table.loc[table["halfwidth"].idxmax()]
    needed = worst["n"] * (worst["halfwidth"] / TARGET_HALFWIDTH) ** 2
    return math.ceil(needed / trials_per_seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timesteps-seeds", type=int, default=6, help="seeds of the flagship (× 5 schedules × 3 prompts)")
    ap.add_argument(
        "--guidance-seeds", type=int, default=3, help="seeds of the guidance ladder (× 6 scales × 2 prompts)"
    )
    ap.add_argument("--out", type=Path, default=Path("findings"), help="where the two reports go")
    ap.add_argument("--quick", action="store_true", help="tiny trials: checks the pipeline, measures nothing")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="spec override for both sweeps")
    add_arguments(ap)
    args = ap.parse_args(argv)
    args.page = args.page and not args.quick  # a quick run measures nothing
    sets = (QUICK if args.quick else []) + args.sets
    started = time.monotonic()
    page = ResultsPage.from_args(args, "flagship", "Flagship findings", INTRO)

    flagship = launch_and_report("sweeps/timesteps.yaml", "timesteps", args.timesteps_seeds, sets, args.out)
    schedules = halfwidths(flagship, "sds.timesteps.schedule", "gt_iou")
    ladder = launch_and_report("sweeps/guidance.yaml", "guidance", args.guidance_seeds, sets, args.out)
    trends = pd.read_csv(args.out / "guidance" / "trends.csv")
    colour = trends[(trends["axis"] == "sds.guidance_scale") & (trends["metric"] == "gt_colour_error")]

    page.print(f"flagship: {len(flagship)} trials; gt_iou per schedule (mean, 95% half-width over prompts × seeds):")
    page.print(schedules.to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    if schedules["halfwidth"].max() > TARGET_HALFWIDTH:
        more = seeds_for(schedules, trials_per_seed=3)
        page.print(
            f"half-widths above {TARGET_HALFWIDTH}: about {more} seeds would reach it (--timesteps-seeds {more})"
        )
    row = colour.iloc[0] if len(colour) else None
    trend = "none" if row is None else f"{row['verdict']}:{row['slope']:.4f}[{row['ci_low']:.4f},{row['ci_high']:.4f}]"
    page.prior(*runs_prior(os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlruns.db"), "timesteps", True))
    for name, seeds in (("timesteps", args.timesteps_seeds), ("guidance", args.guidance_seeds)):
        at = f"{seeds} seed" + ("s" if seeds != 1 else "")
        page.markdown(f"## `{name}` at {at}\n\n" + report_summary(args.out / name / "report.md"))
        if name == "timesteps" and (args.out / name / "comparisons.png").is_file():
            page.figure(args.out / name / "comparisons.png", "paired differences, Holm-level CIs", "flagship.png")
    page.print(
        f"findings timesteps_trials={len(flagship)} timesteps_halfwidth_max={schedules['halfwidth'].max():.4f} "
        f"guidance_trials={len(ladder)} colour_error_trend={trend} minutes={(time.monotonic() - started) / 60:.1f}"
    )
    page.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
