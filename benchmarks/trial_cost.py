"""What a default toy-world trial costs with its speed-ups and without them, at what quality, in one run.

    python benchmarks/trial_cost.py [--prompts 6] [--seed 0] [--seeds 1] [--workers 1] [--threads 1] [--ablate]
                                    [--also k=v] [--out DIR] [--set key=value ...]

Runs the same prompts (the stratified subset of `toyworld_quality.py`: the first 6 cover every shape and colour, 36
is every prompt) as two arms, trial by trial in turn so that a change in the machine's load hits both alike:
  - off: the trial as it was before the step's speed-ups: every `speed.*` switch off but those it already had on
    (`BASELINE_ON`);
  - on: the trial config's defaults.
The arms differ only in `speed.*` keys: steps, evaluation and everything scored are the same. `--ablate` adds one
arm per switch: the defaults with that switch alone off (what each one buys); `--also key=value` adds an arm of the
defaults with that one change (e.g. `--also steps=400`). `--seeds K` runs seeds S … S+K−1 of every prompt; `--set`
changes the config of every arm (e.g. a smoke test with `--set nerf.size=tiny`). `--workers N` runs N prompt-seed
pairs at once, each in its own process with the prior and scorer loaded once, every arm of a pair in the same
process in turn.

Cost is CPU-seconds of the trial's process (user + system, every thread), prior and scorer loaded beforehand and not
counted (a sweep worker loads them once for many trials); quality is the final `gt_iou` (silhouette IoU against the
true object over the eval ring), beside the colour error and the toy CLIP's R@1. Prints a row per trial, each arm's
means and where its CPU time went (steps, evaluations, checkpoints, final renders), the paired gt_iou difference
with its 95% CI over prompts and seeds (Student t), peak RSS and the load average before and after, and as its last
line
    speedup=<CPU-s off / CPU-s on> gt_iou_off=<x> gt_iou_on=<x> cpu_s_on=<s> prompts=<n>
    gt_iou_delta=<mean on − off> gt_iou_ci_low=<x> gt_iou_ci_high=<x>
Target: speedup ≥ 2.5; where a switch is not bit-identical, gt_iou_ci_low ≥ −0.02 over at least 36 prompts × 2
seeds. The machine is shared: measure when it is quiet, and repeat to see the spread.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from results_page import ResultsPage, add_arguments
from scipy import stats
from toyworld_quality import cpu_seconds, stratified_prompts

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.config.schema import SpeedConfig
from dreamfusion.priors.base import load_prior
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.timing import PhaseTimes
from dreamfusion.trial.loop import run_trial

#: Switches the trial already had on before the step's speed-ups: the "off" arm keeps them.
BASELINE_ON = ("shared_eval_pass",)

INTRO = """
What a default toy-world trial costs, and what the step's speed-ups bought: the same prompts and seeds with those
`speed.*` switches off (the trial as it was before them) and with the defaults, trial by trial in turn; the arms
differ only in `speed.*` keys. Cost is the CPU time of the trial's process (prior and scorer loaded beforehand, not
counted); quality is the final `gt_iou`, compared pair by pair. The target: a speed-up of at least 2.5, and a paired
95% interval of `gt_iou` on − off whose lower end is at least −0.02.
"""

#: Final metrics reported per arm: the ground truth's shape and colour scores, and the toy CLIP's R@1.
QUALITY = ("gt_iou", "gt_colour_error", "clip_r_precision", "clip_r_precision_geometry")
#: Phases of the trial loop (`dreamfusion/trial/loop.py`) its CPU time is split into; the rest is set-up.
LOOP_PHASES = ("step", "eval", "checkpoint", "final")


def arms(ablate: bool, also: list[str], common: list[str]) -> dict[str, list[str]]:
    """Arm name → `--set` overrides on the default config (`common` last, so it applies to every arm)."""
    new = [name for name in SpeedConfig.model_fields if name not in BASELINE_ON]
    found = {"off": _sets(SpeedConfig.off(new)), "on": []}
    if ablate:
        found |= {f"on, {name} off": _sets(SpeedConfig.off([name])) for name in SpeedConfig.model_fields}
    found |= {f"on, {change}": [change] for change in also}
    return {name: overrides + common for name, overrides in found.items()}


def _sets(overrides: dict[str, Any]) -> list[str]:
    return [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in overrides.items()]


_loaded: dict[str, Any] = {}


def load(threads: int) -> tuple[Any, Any]:
    """The default prior and scorer, once per process (a sweep worker's load, not counted in a trial's cost)."""
    if not _loaded:
        torch.set_num_threads(threads)
        cfg = build_trial_config({"device": "cpu"}, "--set")
        _loaded["prior"] = prior = load_prior(cfg.prior, cfg.device)
        _loaded["scorer"] = load_scorer(cfg.scoring, prior.device, prior)
    return _loaded["prior"], _loaded["scorer"]


def run_pair(job: tuple[str, int, dict[str, list[str]], Path, int]) -> dict[str, dict[str, float]]:
    """Every arm of one prompt and seed, in turn in this process."""
    prompt, seed, plan, out, threads = job
    prior, scorer = load(threads)
    return {
        name: run_one(prompt, seed, sets, prior, scorer, out / str(j)) for j, (name, sets) in enumerate(plan.items())
    }


def run_one(prompt: str, seed: int, overrides: list[str], prior, scorer, out: Path) -> dict[str, float]:
    """Quality and cost of one trial; the cost also split into the trial loop's phases (CPU seconds)."""
    cfg = build_trial_config(apply_overrides({"prompt": prompt, "seed": seed, "device": "cpu"}, overrides), "--set")
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    with PhaseTimes() as phases:
        result = run_trial(cfg, out, prior=prior, scorer=scorer)
    row = {k: result.metrics[k] for k in QUALITY}
    row |= {"cpu_s": cpu_seconds() - cpu0, "wall_s": time.perf_counter() - wall0}
    return row | {f"{p}_s": phases.cpu_ms[p] / 1000 for p in LOOP_PHASES}


def paired_ci(diffs: list[float]) -> tuple[float, float]:
    """Mean and 95% half-width (Student t) of paired differences; the half-width is nan for a single pair."""
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return mean, math.nan
    return mean, float(stats.t.ppf(0.975, len(diffs) - 1)) * statistics.stdev(diffs) / math.sqrt(len(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="seeds per prompt, from --seed on")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial gets its cpu resource)")
    parser.add_argument("--workers", type=int, default=1, help="prompt-seed pairs run at once, one process each")
    parser.add_argument("--ablate", action="store_true", help="also run the defaults with each switch alone off")
    parser.add_argument("--also", action="append", default=[], metavar="KEY=VALUE", help="an arm: defaults + this")
    parser.add_argument("--out", type=Path, default=None, help="keep the trial folders here")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    page = ResultsPage.from_args(args, "trial-cost", "Trial cost", INTRO)
    page.condition("torch threads", args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="trial_cost_"))
    trials = [(p, s) for s in range(args.seed, args.seed + args.seeds) for p in stratified_prompts(args.prompts)]

    prior, _ = load(args.threads)
    page.prior(prior.name, prior.fingerprint())
    plan = arms(args.ablate, args.also, args.overrides)
    print(f"out {out}")
    page.print(
        f"prior: {prior.describe()}",
        f"{args.threads} thread(s), {len(trials)} trials per arm, {args.workers} worker process(es)",
    )
    for name, overrides in plan.items():
        page.print(f"arm {name}: {' '.join(overrides) or 'the defaults'}")
    page.print(f"{'prompt':20s} {'seed':>4s} {'arm':28s} {'gt_iou':>6s} {'CPU s':>7s} {'wall s':>7s}")

    jobs = [(prompt, seed, plan, out / f"{i:02d}", args.threads) for i, (prompt, seed) in enumerate(trials)]
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in plan}
    with ProcessPoolExecutor(args.workers) if args.workers > 1 else contextlib.nullcontext() as pool:
        for (prompt, seed), pair in zip(trials, pool.map(run_pair, jobs) if pool else map(run_pair, jobs)):
            for name, r in pair.items():
                rows[name].append(r)
                page.print(f"{prompt:20s} {seed:4d} {name:28s} {r['gt_iou']:6.3f} {r['cpu_s']:7.1f} {r['wall_s']:7.1f}")

    mean = {name: {k: statistics.fmean(r[k] for r in rs) for k in rs[0]} for name, rs in rows.items()}
    page.print()
    page.print(
        f"{'arm':28s} {'CPU s':>6s} {'wall s':>6s} {'speedup':>7s} "
        + " ".join(f"{p:>6s}" for p in LOOP_PHASES)
        + "  "
        + " ".join(QUALITY)
    )
    for name, m in mean.items():
        split = " ".join(f"{m[p + '_s']:6.1f}" for p in LOOP_PHASES)
        quality = " ".join(f"{m[k]:.3f}" for k in QUALITY)
        speedup = mean["off"]["cpu_s"] / m["cpu_s"]
        page.print(f"{name:28s} {m['cpu_s']:6.1f} {m['wall_s']:6.1f} {speedup:7.2f} {split}  {quality}")
    page.table(
        ["arm", "CPU s / trial", "speed-up", *(f"{p} CPU s" for p in LOOP_PHASES), *(f"`{k}`" for k in QUALITY)],
        [
            [name, f"{m['cpu_s']:.1f}", f"{mean['off']['cpu_s'] / m['cpu_s']:.2f}"]
            + [f"{m[p + '_s']:.1f}" for p in LOOP_PHASES]
            + [f"{m[k]:.3f}" for k in QUALITY]
            for name, m in mean.items()
        ],
        "Means per trial of each arm (CPU time of the process):",
    )
    page.table(
        ["prompt", "seed", *(f"{name}: `gt_iou` (CPU s)" for name in plan)],
        [
            [prompt, seed, *(f"{rows[name][i]['gt_iou']:.3f} ({rows[name][i]['cpu_s']:.1f})" for name in plan)]
            for i, (prompt, seed) in enumerate(trials)
        ],
        "Per trial:",
    )
    diff, half = paired_ci([on["gt_iou"] - off["gt_iou"] for on, off in zip(rows["on"], rows["off"])])
    page.print(f"gt_iou on − off: {diff:+.4f} ± {half:.4f} (95% CI over {len(trials)} prompt-seed pairs)")
    page.print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    page.print(
        f"speedup={mean['off']['cpu_s'] / mean['on']['cpu_s']:.2f} gt_iou_off={mean['off']['gt_iou']:.3f} "
        f"gt_iou_on={mean['on']['gt_iou']:.3f} cpu_s_on={mean['on']['cpu_s']:.1f} prompts={args.prompts} "
        f"gt_iou_delta={diff:.4f} gt_iou_ci_low={diff - half:.4f} gt_iou_ci_high={diff + half:.4f}"
    )
    page.write()


if __name__ == "__main__":
    main()
