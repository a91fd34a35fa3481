"""Measured step times per prior, NeRF size and device: the table `df-sweep launch --dry-run` estimates a sweep's
CPU- or GPU-hours from (`dreamfusion/console/step_times.json`).

    python benchmarks/step_times.py [--priors toyworld,analytic] [--sizes tiny,small,medium,large] [--steps 10]
                                    [--threads 1] [--write]

For each (prior, NeRF size) on this machine's device (CUDA where present): the median ms of one SDS step, of one
eval view (rendered in colour and textureless, and scored), of one turntable frame and of one image through the
denoiser (what each image a loss runs beyond SDS's two per view adds: ISM, SDI), at the reference settings
(32 px, 32 samples per ray, one view per step): CPU time on a CPU (robust to a shared machine's load), wall time
on a GPU. `--write` puts the rows into the table, keeping the other devices'
rows (GPU rows stay "not yet measured" until a GPU runs this). Prints a table, peak RSS (and CUDA peak) and, as
its last line, `step_times rows=<n> device=<cpu|gpu> load=<1-minute load average>`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time

import torch

from dreamfusion.config.files import build_trial_config
from dreamfusion.console.cost import TABLE
from dreamfusion.priors.base import load_prior
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.trial.evaluation import Evaluation
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import SDSStep

REFERENCE = {"render": {"resolution": 32, "samples_per_ray": 32, "views_per_step": 1}, "eval": {"views": 4}}
FRAMES = 8


def median_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        started = clock()
        fn()
        times.append((clock() - started) * 1000)
    return statistics.median(times)


def _synced_wall() -> float:
    torch.cuda.synchronize()
    return time.perf_counter()


def denoiser_ms(prior, clock, repeats: int = 10) -> float:
    """One image through the denoiser at the reference size: a guided pair's call, halved."""
    res = REFERENCE["render"]["resolution"]
    z = prior.to_model_space(torch.rand(1, 3, res, res, device=prior.device))  # [1, C, h, w]
    t = torch.tensor([prior.num_train_timesteps // 2], device=prior.device)
    embs = torch.cat([prior.text_embedding(""), prior.text_embedding("a red cube")])
    with torch.no_grad():
        return median_ms(lambda: prior.predict_noise_repeated(z, t, embs), repeats, clock) / 2


def measure(prior_name: str, size: str, device: str, steps: int) -> dict:
    cfg = build_trial_config({**REFERENCE, "prior": prior_name, "nerf": {"size": size}, "device": device}, "bench")
    prior = load_prior(cfg.prior, cfg.device)
    scorer = load_scorer(cfg.scoring, prior.device, prior)
    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    evaluation = Evaluation(cfg, scorer, prior.device)
    for _ in range(2):  # warm-up: first calls allocate and (on CUDA) pick kernels
        step(state)
    # On a CPU, the process's CPU time: what CPU-hours count, and what a one-thread trial's wall time is on a quiet
    # machine (a shared machine's load stretches wall time, not CPU time). On a GPU, wall time.
    clock = time.process_time if device == "cpu" else _synced_wall
    step_ms = median_ms(lambda: step(state), steps, clock)
    eval_ms = median_ms(lambda: evaluation(state), 3, clock) / cfg.eval.views
    cams = evaluation.cameras(FRAMES)
    frame_ms = median_ms(lambda: evaluation.render_views(state, cams, "lambertian"), 3, clock) / FRAMES
    return {
        "prior": prior_name,
        "nerf": size,
        "device": "gpu" if device == "cuda" else "cpu",
        "step_ms": round(step_ms, 2),
        "eval_view_ms": round(eval_ms, 2),
        "frame_ms": round(frame_ms, 2),
        "denoiser_ms": round(denoiser_ms(prior, clock), 3),
    }


def write(rows: list[dict], device: str, load: float) -> None:
    """Replace this device's measured rows, keep every other row."""
    table = json.loads(TABLE.read_text())
    measured = {(r["prior"], r["nerf"], r["device"]) for r in rows}
    kept = [r for r in table["rows"] if (r["prior"], r["nerf"], r["device"]) not in measured]
    cores = os.cpu_count()
    where = (
        f"as CPU time on a {cores}-core CPU" if device == "cpu" else f"as wall time on {torch.cuda.get_device_name()}"
    )
    table["measured"] = f"{where} (load {load:.1f}) by benchmarks/step_times.py, {time.strftime('%Y-%m-%d')}"
    table.pop("denoiser_measured", None)  # measured with the steps from now on
    table["rows"] = sorted(kept + rows, key=lambda r: (r["device"], r["prior"], r["nerf"]))
    TABLE.write_text(json.dumps(table, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", default="toyworld,analytic")
    parser.add_argument("--sizes", default="tiny,small,medium,large")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (after 2 warm-up steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads: a trial's resources.cpu (default 1)")
    parser.add_argument("--write", action="store_true", help=f"update {TABLE}")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # as a sweep trial runs: its CPU resource is its torch threads
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = [
        measure(prior, size, device, args.steps) for prior in args.priors.split(",") for size in args.sizes.split(",")
    ]
    load = os.getloadavg()[0]
    print(
        f"{'prior':10s} {'nerf':7s} {'device':6s} {'step ms':>9s} {'eval view ms':>13s} {'frame ms':>9s} "
        f"{'denoiser ms':>12s}"
    )
    for r in rows:
        print(
            f"{r['prior']:10s} {r['nerf']:7s} {r['device']:6s} {r['step_ms']:9.1f} {r['eval_view_ms']:13.1f} "
            f"{r['frame_ms']:9.1f} {r['denoiser_ms']:12.2f}"
        )
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        + (f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if device == "cuda" else "")
    )
    if args.write:
        write(rows, rows[0]["device"], load)
    print(f"step_times rows={len(rows)} device={rows[0]['device']} load={load:.2f}")


if __name__ == "__main__":
    main()
