"""How many SDS trials one GPU should hold: 1, 2 and 4 trials at once on one GPU (`resources.gpu` = 1/k), with the
Stable Diffusion prior in fp16.

    python benchmarks/gpu_packing.py [--prior PATH_OR_ID] [--steps 200] [--tiny] [--cpu]

Each k is a k-trial sweep through `launch_sweep` on an embedded Ray: the real sweep path, with Tune placing the
trials by their fractional GPU and each worker loading its own prior. The trial config is the base of
sweeps/gpu/stable_diffusion.yaml (64 px renders, 512 samples per ray, the large NeRF). A trial's steps/s is 1000 /
its median `step_ms` (optimisation steps only: start-up and evals excluded); the total is the sum over the k
trials, which run at once. Peak GPU memory is the device's memory in use (every process), sampled every 0.2 s
during the sweep, less what was in use before it. Last line:
    packing steps_per_s_1=<total> steps_per_s_2=<total> steps_per_s_4=<total>

--prior: a diffusers Stable Diffusion hub id or local folder (default: the stable-diffusion prior's default,
stabilityai/stable-diffusion-2-1-base). --tiny: a tiny random SD pipeline (tests/tiny_pipelines.py) built in a
temp dir, with small renders: a smoke run of the script. --cpu: trials on the CPU in float32 (gpu resources 0),
to exercise the script where there is no GPU; its numbers say nothing about packing. Without CUDA and without
--cpu it prints one line and exits 0. Scoring uses the toy world's small CLIP (shipped, offline): it runs only at
the final eval and does not touch the steps/s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "0")  # one GPU: on a bigger node, Ray could spread the k trials

import torch
from peak import PeakSampler

from dreamfusion.config.files import read_yaml
from dreamfusion.sweep.launch import launch_sweep
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.sweep.validate import check_space
from dreamfusion.toyworld.assets import WEIGHTS
from dreamfusion.tracking.runs import child_runs
from dreamfusion.tracking.store import client

ROOT = Path(__file__).resolve().parents[1]
GPU_SPEC = ROOT / "sweeps" / "gpu" / "stable_diffusion.yaml"
PACKINGS = (1, 2, 4)
#: Small renders and field for --tiny: the tiny pipeline's 16 px images need no more.
TINY = {"nerf": {"size": "tiny"}, "render": {"resolution": 16, "samples_per_ray": 16, "views_per_step": 1}}
GIB = 1024**3


def gpu_memory_in_use() -> int:
    """Bytes in use on GPU 0 by every process (trials run in Ray workers, not here)."""
    free, total = torch.cuda.mem_get_info(0)
    return total - free


def peak_gpu_memory() -> PeakSampler:
    """Peak GPU memory in use, less what was in use at start."""
    baseline = gpu_memory_in_use()
    return PeakSampler(lambda: gpu_memory_in_use() - baseline, period_s=0.2)


def base_config(args: argparse.Namespace, model: str | None) -> dict:
    """The GPU sweep's trial config, for `--steps` steps with one eval at the end and a light final render."""
    base = read_yaml(GPU_SPEC)["base"]
    base.update(TINY if args.tiny else {})
    base.update(
        {
            "prior": {"kind": "stable-diffusion", "model": model, "dtype": "float32" if args.cpu else "float16"},
            "device": "cpu" if args.cpu else "cuda",
            "scoring": {"model": str(WEIGHTS / "clip")},
            "prompt": "a hamburger",
            "steps": args.steps,
            "checkpoint_every": args.steps,
            "eval": {"every": args.steps, "views": 2, "turntable_frames": 2},
        }
    )
    return base


def packing_spec(k: int, base: dict, cpu: bool) -> SweepSpec:
    """k trials, each asking for 1/k of the GPU (with --cpu: 1/k of this machine's CPUs, no GPU)."""
    cpus = os.cpu_count() or 1
    resources = {"cpu": cpus / k, "gpu": 0} if cpu else {"cpu": max(1, min(4, cpus // k)), "gpu": 1 / k}
    spec = SweepSpec.model_validate(
        {
            "name": f"packing-{k}",
            "base": base,
            "space": {"seed": {"grid": list(range(k))}},
            "resources": resources,
            "max_failures": 0,
        }
    )
    check_space(spec, f"packing-{k}")
    return spec


def run_packing(k: int, base: dict, args: argparse.Namespace, work: Path) -> tuple[list[float], float | None, str]:
    """(steps/s of each trial, peak GPU memory in GiB or None on the CPU, the prior's description)."""
    spec = packing_spec(k, base, args.cpu)
    work.mkdir()
    uri = f"sqlite:///{work / 'mlruns.db'}"
    memory = contextlib.nullcontext() if args.cpu else peak_gpu_memory()
    with memory:
        outcome = launch_sweep(spec, tracking_uri=uri, storage=work / "ray_results", echo=_quiet)
    peak = None if args.cpu else memory.peak / GIB
    if not outcome.ok:
        raise SystemExit(f"packing {k}: the sweep did not finish: {[r.state for r in outcome.rows]}")
    tracker = outcome.launch.tracker
    runs = child_runs(tracker.uri, tracker.experiment_id, tracker.parent_run_id)
    rates = [
        1000 / statistics.median(m.value for m in client(uri).get_metric_history(r.info.run_id, "step_ms"))
        for r in runs
    ]
    return rates, peak, runs[0].data.tags.get("df.prior", "?")


def _quiet(line: str) -> None:
    """Tune's table and the sweep's own lines would bury the numbers; the sweep's outcome is checked instead."""


def prior_model(args: argparse.Namespace, work: Path) -> str | None:
    if not args.tiny:
        return args.prior
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipelines import make_tiny_sd

    return str(make_tiny_sd(work / "tiny-sd"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", default=None, help="SD hub id or local folder (default: the prior's default)")
    parser.add_argument("--steps", type=int, default=200, help="steps per trial")
    parser.add_argument("--tiny", action="store_true", help="a tiny random SD pipeline: a smoke run")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (gpu resources 0): no packing numbers")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_packing: no CUDA GPU on this machine; nothing to measure (--cpu runs the script on the CPU)")
        return 0
    totals = {}
    with tempfile.TemporaryDirectory(prefix="dfs-pack-") as tmp:
        work = Path(tmp)
        base = base_config(args, prior_model(args, work))
        for k in PACKINGS:
            rates, peak, prior = run_packing(k, base, args, work / f"k{k}")
            totals[k] = sum(rates)
            memory = "n/a (CPU)" if peak is None else f"{peak:.2f} GiB"
            if k == PACKINGS[0]:
                print(f"prior: {prior}")
            print(
                f"k={k}  gpu per trial {1 / k:.2f}  steps/s per trial {' '.join(f'{r:.2f}' for r in rates)}  "
                f"total {totals[k]:.2f}  peak GPU memory {memory}"
            )
    print("packing " + " ".join(f"steps_per_s_{k}={totals[k]:.2f}" for k in PACKINGS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
