"""What a sweep costs beyond its trials: N equal trials on Ray Tune + MLflow, against the same N trials run one
after another in one process with neither.

    python benchmarks/sweep_overhead.py [--trials 4] [--trial-seconds 30] [--cpu 1] [--slots N]

The trial length is set through `steps`, calibrated on this machine. Prints a table and, as its last line,
    overhead_ratio=<actual wall / ideal wall> per_trial_overhead_s=<s> prior_loads=<count> trials=<N> startup_s=<s>
ideal wall = Σ trial compute (the sequential run's per-trial walls) / parallel slots; actual wall = `launch_sweep`
from call to return: Ray start, MLflow store and runs, prior loads, reports and checkpoints all count.
per_trial_overhead_s = (actual − ideal) × slots / N, the slot time each trial costs beyond its compute.
startup_s: from `launch_sweep` called to the first trial's MLflow run starting (Ray, the store, worker start-up,
prior load). Targets: overhead_ratio ≤ 1.10 for ~30 s trials; prior_loads = worker processes, not trials;
startup_s ≤ 10 on the embedded defaults. The load average is printed beside the numbers: the machine is shared.

The sequential run goes first, so any prior disk cache (the analytic prior's image bank) is warm for both. The
ideal assumes `slots` free cores: on a machine that others share, --slots 1 still measures the overhead cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import torch
import yaml
from peak import PeakSampler
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import build_trial_config
from dreamfusion.priors.base import load_prior
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.sweep.validate import load_spec
from dreamfusion.tracking.runs import child_runs
from dreamfusion.trial.loop import run_trial
from dreamfusion.tune.launch import launch_sweep

INTRO = """
N equal trials of the default prior as a sweep on Ray Tune + MLflow, against the same trials run one after another
in one process with neither: the sweep's wall time beyond its trials' compute, and its start-up (from `launch`
called to the first trial's run starting: Ray, the store, worker start-up, the prior's load).
"""

#: A mid-sized trial: the small NeRF at 32 px, one view per step, four evals (so four reports and checkpoints).
BASE = {
    "nerf": {"size": "small"},
    "render": {"resolution": 32, "samples_per_ray": 32, "views_per_step": 1},
    "eval": {"views": 4, "turntable_frames": 8},
}
CALIBRATION_STEPS = 40
EVALS = 4


def trial_base(steps: int) -> dict:
    every = max(1, steps // EVALS)
    return {**BASE, "steps": steps, "checkpoint_every": every, "eval": {**BASE["eval"], "every": every}}


def calibrate(seconds: float, prior, scorer, out: Path) -> int:
    """Steps that make one trial last about `seconds` here: a short trial gives the time of a step and the fixed
    cost of the rest (evals, final renders), which does not grow with the steps."""
    cfg = build_trial_config(trial_base(CALIBRATION_STEPS), "calibration")
    started = time.perf_counter()
    result = run_trial(cfg, out, prior=prior, scorer=scorer)
    wall = time.perf_counter() - started
    step_s = sum(h["step_ms"] for h in result.history) / len(result.history) / 1000
    fixed_s = wall - CALIBRATION_STEPS * step_s
    return max(EVALS, round((seconds - fixed_s) / step_s))


def sequential(steps: int, trials: int, prior, scorer, out: Path) -> list[float]:
    """Wall of each trial, run one after another in this process: the compute a sweep cannot avoid."""
    walls = []
    for seed in range(trials):
        cfg = build_trial_config({**trial_base(steps), "seed": seed}, "sequential")
        started = time.perf_counter()
        run_trial(cfg, out / f"seed{seed}", prior=prior, scorer=scorer)
        walls.append(time.perf_counter() - started)
    return walls


def tree_rss_mb() -> float:
    """Resident memory of this process and all its descendants (the Ray processes), from /proc."""
    return sum(_rss_mb(pid) for pid in _descendants(os.getpid()))


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def sweep(steps: int, trials: int, cpu: float, slots: int, work: Path) -> dict[str, float]:
    """The same trials as a sweep: its wall, where the time went, prior loads per worker, peak RSS."""
    spec_path = work / "overhead.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "overhead",
                "base": trial_base(steps),
                "space": {"seed": {"grid": list(range(trials))}},
                "tune": {"max_concurrent_trials": slots},
                "resources": {"cpu": cpu},
                "max_failures": 0,
            },
            sort_keys=False,
        )
    )
    spec = load_spec(spec_path)
    with PeakSampler(tree_rss_mb) as rss:
        started = time.time()
        outcome = launch_sweep(spec, tracking_uri=f"sqlite:///{work / 'mlruns.db'}", storage=work / "ray_results")
        ended = time.time()
    if not outcome.ok:
        raise SystemExit(f"the sweep did not finish: {[r.state for r in outcome.rows]}")
    runs = child_runs(
        outcome.launch.tracker.uri, outcome.launch.tracker.experiment_id, outcome.launch.tracker.parent_run_id
    )
    starts = [r.info.start_time / 1000 for r in runs]
    ends = [r.info.end_time / 1000 for r in runs]
    return {
        "wall": ended - started,
        "startup": min(starts) - started,
        "shutdown": ended - max(ends),
        "trial_walls": [e - s for s, e in zip(starts, ends)],
        "prior_loads": _prior_loads(work),
        "rss_mb": rss.peak,
    }


def _prior_loads(work: Path) -> int:
    """Loads summed over worker processes: each report carries its worker's pid and running count."""
    loads: dict[int, int] = {}
    for result in (work / "ray_results" / "overhead").glob("*/*/result.json"):
        for line in result.read_text().splitlines():
            report = json.loads(line)
            loads[report["worker_pid"]] = max(loads.get(report["worker_pid"], 0), report["prior_loads"])
    return sum(loads.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--trial-seconds", type=float, default=30.0)
    parser.add_argument("--cpu", type=float, default=1.0, help="CPUs per trial (and torch threads)")
    parser.add_argument("--slots", type=int, default=None, help="trials at once (default: CPUs / cpu per trial)")
    add_arguments(parser)
    args = parser.parse_args()
    page = ResultsPage.from_args(args, "sweep-overhead", "Sweep overhead", INTRO)
    torch.set_num_threads(max(1, int(args.cpu)))
    slots = max(1, min(args.trials, args.slots or int((os.cpu_count() or 1) // args.cpu)))
    with tempfile.TemporaryDirectory(prefix="dfs-bench-") as tmp:
        work = Path(tmp)
        started = time.perf_counter()
        cfg = build_trial_config({}, "bench")
        prior = load_prior(cfg.prior, "cpu")
        scorer = load_scorer(cfg.scoring, prior.device, prior)
        load_s = time.perf_counter() - started
        page.prior(cfg.prior.kind, prior.fingerprint())
        steps = calibrate(args.trial_seconds, prior, scorer, work / "calibration")
        walls = sequential(steps, args.trials, prior, scorer, work / "sequential")
        sequential_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        swept = sweep(steps, args.trials, args.cpu, slots, work)
    actual, ideal = swept["wall"], sum(walls) / slots
    overhead = (actual - ideal) * slots / args.trials
    rows = [
        ("trials x steps", f"{args.trials} x {steps}"),
        ("parallel slots", f"{slots} ({os.cpu_count()} CPUs, {args.cpu:g} per trial)"),
        ("prior load (in-process, warm)", f"{load_s:.2f} s"),
        ("trial wall, sequential (each)", _seconds(walls)),
        ("trial wall, in the sweep (MLflow run start to end)", _seconds(sorted(swept["trial_walls"]))),
        ("sweep start to first trial (Ray, store, workers)", f"{swept['startup']:.1f} s"),
        ("last trial to sweep end (Ray shutdown, summary)", f"{swept['shutdown']:.1f} s"),
        ("ideal sweep wall (sequential sum / slots)", f"{ideal:.1f} s"),
        ("actual sweep wall", f"{actual:.1f} s"),
        ("peak RSS, sequential process", f"{sequential_rss:.0f} MB"),
        ("peak RSS, sweep (driver + Ray + workers)", f"{swept['rss_mb']:.0f} MB"),
        ("load average (1, 5, 15 min) at the end", "  ".join(f"{x:.2f}" for x in os.getloadavg())),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    page.table(["", "measured"], rows)
    page.print(
        f"overhead_ratio={actual / ideal:.3f} per_trial_overhead_s={overhead:.2f} "
        f"prior_loads={swept['prior_loads']} trials={args.trials} startup_s={swept['startup']:.1f}"
    )
    page.write(max(sequential_rss, swept["rss_mb"]))


def _seconds(values: list[float]) -> str:
    return "  ".join(f"{v:.1f}" for v in values) + " s"


if __name__ == "__main__":
    main()
