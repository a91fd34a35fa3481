"""What sharing one prior saves when several SDS trials share a device: k = 1, 2, 4, 8 trials at once, each
loading its own prior (`local`) or all served by one batching prior service (`shared`, `prior.placement: shared`),
with the full-size Stable Diffusion 2.1-base architecture and random weights (`random:sd-2.1-base`: the real
shapes, FLOPs and memory, no download), in float16 on a GPU.

    python benchmarks/gpu_packing.py [--cpu] [--ks 1,2,4,8] [--steps 30] [--max-batch 8] [--tiny]

Trials run in the Ray-free harness (packing_harness.py): k processes running the sweep's `run_trial`, plus one
service process holding the denoiser behind the sweep service's batcher when shared. Per (k, placement): steps/s
per trial (1000 / median step time) and in total, peak memory in use (GPU: the whole device, sampled; CPU: the
resident memory of the trial and service processes, sampled), and the batching achieved (mean requests per UNet
call). Then max |ε̂ stacked − ε̂ alone| of k requests stacked into one call.

Writes the results page docs/results/gpu-packing.md (not with --tiny). On a GPU: a Markdown table, and the last line
    gpu k=<ks> local_steps_per_s=<…> shared_steps_per_s=<…> shared_over_local_memory=<…> batched_max_abs_diff=<x>
(totals and ratio at the largest k). With --cpu (default k = 2, float32, 2 steps, a small NeRF: the prior is what
is measured) the shared run uses max batch 1, so its trials must equal the local ones bit for bit; last line
    cpu k=<k> local_rss_mb=<m> shared_rss_mb=<m> shared_over_local_rss=<r> identical_metrics=<0|1> \
        batched_max_abs_diff=<x>   (one line)
--tiny: the tiny random SD pipeline of tests/tiny_pipelines.py instead of the full-size one (a smoke run of this
script: the test suite's). The load average is printed beside the numbers: on a shared machine they are noisy.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from packing_harness import Packing, rss_bytes, run_packing, stacked_max_abs_diff
from peak import PeakSampler
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import read_yaml
from dreamfusion.config.schema import TrialConfig

ROOT = Path(__file__).resolve().parents[1]
GPU_SPEC = ROOT / "sweeps" / "gpu" / "stable_diffusion.yaml"
MB, GIB = 1024**2, 1024**3
INTRO = """
What sharing one prior saves when several SDS trials share a device: k trials at once, each loading its own prior
(`local`) or all served by one batching prior service (`shared`,
[`prior.placement: shared`](../guide/priors.md#one-prior-per-gpu-for-many-trials-priorplacement-shared)), with the
full-size Stable Diffusion 2.1-base architecture and seeded random weights (`random:sd-2.1-base`: the real shapes,
FLOPs and memory, no download). Peak memory in use is the GPU's on a GPU, the trial and service processes' resident
memory on a CPU; on a CPU the shared run uses max batch 1, so its trials must equal the local ones bit for bit.
`bash benchmarks/device_check.sh` runs it on a GPU at k = 1, 2, 4, 8 in float16.
"""
#: On a CPU the NeRF is kept small: what is measured is the prior (a 64 px render → 512 px → VAE → UNet).
CPU_TRIAL = {"nerf": {"size": "small"}, "render": {"resolution": 64, "samples_per_ray": 32, "views_per_step": 1}}
TINY_TRIAL = {"nerf": {"size": "tiny"}, "render": {"resolution": 16, "samples_per_ray": 16, "views_per_step": 1}}


def trial_configs(args: argparse.Namespace, k: int, placement: str, model: str) -> list[TrialConfig]:
    """k trials of the GPU sweep's settings (seeds 0..k-1), on `model`, without a scorer; toy-world prompt, so
    the exact ground-truth metrics are there to compare."""
    base = read_yaml(GPU_SPEC)["base"]
    base.update(CPU_TRIAL if args.cpu else {})
    base.update(TINY_TRIAL if args.tiny else {})
    max_batch = 1 if args.cpu else args.max_batch  # on a CPU the point is identical metrics
    base.update(
        {
            "prompt": "a red cube",
            "prior": {"kind": "stable-diffusion", "model": model, "placement": placement, "max_batch": max_batch},
            "scoring": {"model": "none"},
            "device": "cpu" if args.cpu else "cuda",
            "steps": args.steps,
            "checkpoint_every": args.steps,
            "eval": {"every": args.steps, "views": 2, "turntable_frames": 2},
        }
    )
    return [TrialConfig.model_validate({**base, "seed": seed}) for seed in range(k)]


@contextlib.contextmanager
def device_memory(cpu: bool, pids: list[int]) -> Iterator[PeakSampler]:
    """Peak memory in use while the trials run: the processes' resident memory, or the GPU's, less its baseline."""
    if cpu:
        read = lambda: rss_bytes(pids)
    else:
        free, total = torch.cuda.mem_get_info(0)
        baseline = total - free
        read = lambda: total - torch.cuda.mem_get_info(0)[0] - baseline
    with PeakSampler(read, period_s=0.1) as sampler:
        yield sampler


def model_for(args: argparse.Namespace, work: Path) -> str:
    if not args.tiny:
        return "random:sd-2.1-base"
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipelines import make_tiny_sd

    return str(make_tiny_sd(work / "tiny-sd"))


def measure(args: argparse.Namespace, work: Path, model: str, page: ResultsPage) -> dict[tuple[int, str], Packing]:
    threads_total = os.cpu_count() or 1
    found = {}
    for k in args.ks:
        for placement in ("local", "shared"):
            cfgs = trial_configs(args, k, placement, model)
            threads = max(1, threads_total // k) if args.cpu else 2
            folder = work / f"{placement}-{k}"
            folder.mkdir()
            memory = lambda pids: device_memory(args.cpu, pids)
            found[k, placement] = packing = run_packing(cfgs, placement, folder, threads, memory)
            page.print(row(packing, found.get((k, "local"))))
    return found


def row(p: Packing, local: Packing | None) -> str:
    """One Markdown table row."""
    speedup = f"{p.total_steps_per_s / local.total_steps_per_s:.2f}×" if local and p is not local else "1.00×"
    batching = f"{p.batching.get('mean_batch', 0):.2f}" if p.batching else "—"
    per_trial = sum(t.steps_per_s for t in p.trials) / len(p.trials)
    return (
        f"| {p.k} | {p.placement} | {per_trial:.2f} | {p.total_steps_per_s:.2f} | {speedup} | "
        f"{p.peak_bytes / GIB:.2f} | {batching} |"
    )


def identical(a: Packing, b: Packing) -> bool:
    """Same final metrics and the same per-step results for every trial (step times excepted)."""
    return all(x.metrics == y.metrics and x.results() == y.results() for x, y in zip(a.trials, b.trials))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cpu", action="store_true", help="on the CPU, float32, resident memory; default k=2")
    parser.add_argument("--ks", type=lambda s: [int(k) for k in s.split(",")], default=None, help="e.g. 1,2,4,8")
    parser.add_argument("--steps", type=int, default=None, help="steps per trial (default 30; 2 with --cpu)")
    parser.add_argument("--max-batch", type=int, default=8, help="the shared service's max batch on a GPU")
    parser.add_argument("--tiny", action="store_true", help="the tiny random SD pipeline: a smoke run")
    add_arguments(parser)
    args = parser.parse_args()
    args.page = args.page and not args.tiny  # a smoke run measures nothing
    args.ks = args.ks or ([2] if args.cpu else [1, 2, 4, 8])
    args.steps = args.steps or (2 if args.cpu else 30)
    if not args.cpu and not torch.cuda.is_available():
        print("gpu_packing: no CUDA GPU on this machine; nothing to measure (--cpu measures resident memory)")
        return 0
    device = "CPU" if args.cpu else torch.cuda.get_device_name(0)
    page = ResultsPage.from_args(args, "gpu-packing", "Shared prior placement", INTRO)
    page.condition("device", device)
    page.print(f"gpu_packing on {device}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    page.print("| trials | placement | steps/s per trial | steps/s total | vs local | peak GiB | requests per call |")
    page.print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="dfs-pack-") as tmp:
        work = Path(tmp)
        model = model_for(args, work)
        found = measure(args, work, model, page)
        k = max(args.ks)
        diff = stacked_max_abs_diff(trial_configs(args, 1, "shared", model)[0], max(k, 2))
    local, shared = found[k, "local"], found[k, "shared"]
    page.print(f"load average after: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    page.markdown("\n".join(line for line in page.output if line.startswith("|")))
    page.prior(model, None)  # seeded random weights, made in the trial processes: no trained prior to be stale
    page.print(last_line(args, k, local, shared, found, diff))
    page.write(max(p.peak_bytes for p in found.values()) / MB)
    return 0


def last_line(args: Any, k: int, local: Packing, shared: Packing, found: dict, diff: float) -> str:
    if args.cpu:
        same = int(all(identical(found[j, "local"], found[j, "shared"]) for j in args.ks))
        return (
            f"cpu k={k} local_rss_mb={local.peak_bytes / MB:.0f} shared_rss_mb={shared.peak_bytes / MB:.0f} "
            f"shared_over_local_rss={shared.peak_bytes / local.peak_bytes:.2f} identical_metrics={same} "
            f"batched_max_abs_diff={diff:.2e}"
        )
    return (
        f"gpu k={','.join(map(str, args.ks))} local_steps_per_s={local.total_steps_per_s:.2f} "
        f"shared_steps_per_s={shared.total_steps_per_s:.2f} "
        f"shared_over_local_memory={shared.peak_bytes / local.peak_bytes:.2f} batched_max_abs_diff={diff:.2e}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
