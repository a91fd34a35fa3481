"""What a trial's take-away artifacts add to its time: the field weights, the mesh (marching cubes + glb), the mp4,
and the toy world's mesh scores, against the trial they follow.

    python benchmarks/export_cost.py [--spec sweeps/smoke.yaml] [--prompt "a green torus"] [--set key=value ...]

Runs one trial of the spec's base config (every export off), then times each export on its final state, the median
of three runs each, and one frame as `df-sweep export` renders it by default (256 px, 64 samples per ray: its video
and renders cost a multiple of that). Prints peak RSS and the load average (the machine is shared: read the numbers
beside it), and as its last line
    export_s=<x> trial_s=<y> added_fraction=<x/y> weights_s=… mesh_s=… video_s=… mesh_scores_s=… frame_cpu_s=…
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import apply_overrides, build_trial_config, read_yaml
from dreamfusion.evaluators.base import EvalViews
from dreamfusion.export.mesh import extract_mesh, write_mesh
from dreamfusion.export.video import write_mp4
from dreamfusion.toyworld.mesh_truth import MeshTruth
from dreamfusion.trial.evaluation import scene
from dreamfusion.trial.loop import TrialCallback, TrialInfo, run_trial
from dreamfusion.trial.state import TrialState, latest_checkpoint, load_checkpoint

MB = 1 << 20
INTRO = """
What a trial's take-away artifacts add to its time (the field weights, the mesh by marching cubes, the mp4, the toy
world's mesh scores), each the median of three runs on one trial's final state, against the trial; and the CPU time of
one frame as `df-sweep export` renders it by default (256 px, 64 samples per ray), of which its 48-frame video and
its renders are multiples ([Taking results away](../guide/takeaway.md)). One torch thread.
"""
#: `df-sweep export`'s default frame: its resolution and samples per ray.
EXPORT_FRAME = (256, 64)


def timed(fn: Callable[[], object], repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class PriorHash(TrialCallback):
    """Keeps the sha256 of the prior the trial loaded (what its run would be tagged with)."""

    sha256: str | None = None

    def on_start(self, cfg: object, start_step: int, info: TrialInfo) -> None:
        self.sha256 = info.prior_hash


def cpu_seconds(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="sweeps/smoke.yaml")
    parser.add_argument("--prompt", default="a green torus")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    add_arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as a sweep trial with resources.cpu = 1 runs
    page = ResultsPage.from_args(args, "export-cost", "Export cost", INTRO)
    page.condition("torch threads", 1)
    base = read_yaml(args.spec).get("base", {})
    off = ["export.weights=false", "export.mesh=false", "export.video=false", f"prompt={args.prompt!r}"]
    cfg = build_trial_config(apply_overrides(base, [*off, *args.overrides]), args.spec)
    e = cfg.export
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        started = time.perf_counter()
        prior_hash = PriorHash()
        run_trial(cfg, out, prior_hash)
        trial_s = time.perf_counter() - started
        state = TrialState(cfg, torch.device("cpu"))
        load_checkpoint(state, latest_checkpoint(out))
        turn = scene(state)
        frames = turn.render(turn.ring(cfg.eval.turntable_frames), "shaded")  # the GIF's frames, reused by the mp4
        mesh = extract_mesh(state.field, e.mesh_resolution, e.threshold)
        views = EvalViews(None, None, None, None, None, cfg.render.resolution, lambda: mesh)  # type: ignore[arg-type]
        scorer = MeshTruth(cfg, None)  # type: ignore[arg-type]
        costs = {
            "weights_s": timed(lambda: state.weights().save(out / "field.pt")),
            "mesh_s": timed(
                lambda: write_mesh(
                    state.field, out / "mesh.glb", e.mesh_resolution, e.threshold, int(e.mesh_max_mb * MB)
                )
            ),
            "video_s": timed(lambda: write_mp4(frames, out / "turntable.mp4", e.video_fps, int(e.video_max_mb * MB))),
            "mesh_scores_s": timed(lambda: scorer.final(views)),
        }
        frame_cpu_s = cpu_seconds(lambda: turn.render(turn.ring(1), "shaded", *EXPORT_FRAME))
        sizes = {name: (out / name).stat().st_size / 1e6 for name in ("field.pt", "mesh.glb", "turntable.mp4")}
    export_s = sum(costs.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = os.getloadavg()
    page.prior(cfg.prior.kind, prior_hash.sha256)
    page.print(f"trial ({args.spec} base, {cfg.prompt!r}, exports off): {trial_s:.1f}s")
    for name, seconds in costs.items():
        page.print(f"  {name:14s} {seconds:6.2f}s")
    page.print("  sizes: " + ", ".join(f"{n} {mb:.2f} MB" for n, mb in sizes.items()))
    side, samples = EXPORT_FRAME
    page.print(f"df-sweep export frame ({side} px, {samples} samples per ray): {frame_cpu_s:.2f} CPU-s")
    page.print(
        f"peak RSS {peak:.0f} MB; load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs"
    )
    page.print(
        f"export_s={export_s:.2f} trial_s={trial_s:.1f} added_fraction={export_s / trial_s:.3f} "
        + " ".join(f"{k}={v:.2f}" for k, v in costs.items())
        + f" frame_cpu_s={frame_cpu_s:.2f}"
    )
    page.write()


if __name__ == "__main__":
    main()
