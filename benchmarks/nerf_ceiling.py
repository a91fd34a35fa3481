"""What the trial's NeRF and renderer can reach at all: the field fitted directly to the true object's renders.

    python benchmarks/nerf_ceiling.py [--steps 100] [--seed 0] [--set key=value ...]

SDS at its best would hand the NeRF the true object's pixels. This fits the default trial's field (its size,
resolution, optimiser, cameras, lights, shadings and step count, every draw from the trial's own generator) to the
world's ground-truth renders of each shape by photometric MSE, with no prior in the loop, then scores it with the
same ground-truth evaluator as a trial (`gt_iou` on the 8-view eval ring). A shape's `gt_iou` here is the limit the
representation and the step budget put on any prior; `--set nerf.size=medium`, `--set render.resolution=64` or
`--steps 400` show which of them binds. One lit colour prompt per shape ("a red cube", ...: the silhouette does not
depend on the colour).

Prints a row per shape and, as its last line,
    ceiling_gt_iou=<mean> cube=<x> sphere=<x> cone=<x> cylinder=<x> torus=<x> pyramid=<x> steps=<n>
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import torch
import torch.nn.functional as F
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.nerf.cameras import sample_cameras, sample_lights
from dreamfusion.nerf.render import Lighting
from dreamfusion.scoring.none import NO_SCORER
from dreamfusion.toyworld import world
from dreamfusion.trial.evaluation import Evaluation
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import OCCUPANCY_EVERY, choose_shading

INTRO = """
What the trial's NeRF and renderer reach with no prior at all: the default trial's field (its size, resolution,
optimiser, cameras, lights, shadings and step count) fitted to the world's true renders of each shape by photometric
MSE, then scored by the trial's own `gt_iou` on the 8-view eval ring. A shape's `gt_iou` here is the limit the
representation and the step budget put on any prior ([Toy-world quality](toyworld-quality.md) has SDS's beside it).
"""


def fit(cfg: TrialConfig) -> float:
    """The final `gt_iou` of the field fitted to the true renders of `cfg.prompt` for `cfg.steps` steps."""
    caption = world.parse_prompt(cfg.prompt)
    assert caption is not None, cfg.prompt
    state = TrialState(cfg, torch.device("cpu"))
    g = state.generator
    while state.step < cfg.steps:
        if state.step % OCCUPANCY_EVERY == 0:
            state.occupancy.update(state.field.density)
        cams = sample_cameras(cfg.camera, cfg.render.views_per_step, g)
        shading = choose_shading(cfg.render, state.step, g)
        lights = sample_lights(cams, g)
        out = state.render(cams, Lighting(shading, lights, cfg.render.ambient, cfg.render.diffuse), g, None, False)
        truth = world.render_caption(caption, cams, cfg.render.resolution, lights, shading=shading)  # [B, 3, H, W]
        loss = F.mse_loss(out.rgb, truth)
        state.optim.zero_grad(set_to_none=True)
        loss.backward()
        state.optim.step()
        state.step += 1
    metrics, _ = Evaluation(cfg, None, torch.device("cpu"))(state)  # type: ignore[arg-type]
    return metrics["gt_iou"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=None, help="fit steps (default: the trial's `steps`)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_arguments(ap)
    args = ap.parse_args()
    page = ResultsPage.from_args(args, "nerf-ceiling", "The NeRF's ceiling", INTRO)
    page.condition("torch threads", torch.get_num_threads())
    base = {
        "seed": args.seed,
        "device": "cpu",
        "scoring": {"model": NO_SCORER},
        "eval": {"evaluators": ["ground_truth"]},
    }
    if args.steps:
        base["steps"] = args.steps
    scores, started = {}, time.perf_counter()
    for shape in world.SHAPES:
        cfg = build_trial_config(apply_overrides({**base, "prompt": f"a red {shape}"}, args.overrides), "--set")
        scores[shape] = fit(cfg)
        page.print(f"{shape:9s} gt_iou {scores[shape]:.3f}  [{time.perf_counter() - started:.0f}s]")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    page.print(f"peak RSS {rss:.0f} MB, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    mean = sum(scores.values()) / len(scores)
    page.table(["", "mean", *world.SHAPES], [["`gt_iou`", f"{mean:.3f}", *(f"{v:.3f}" for v in scores.values())]])
    page.print(
        f"ceiling_gt_iou={mean:.3f} " + " ".join(f"{k}={v:.3f}" for k, v in scores.items()) + f" steps={cfg.steps}"
    )
    page.write()


if __name__ == "__main__":
    main()
