"""SDS's known failure modes, made to appear in the toy world and counted exactly: small versions of the four
phenomenon sweeps of `sweeps/phenomena/`.

    python benchmarks/phenomena.py [--seed S] [--seeds K] [--out DIR] [--workers 2] [--janus-bias B]
                                   [--set key=value ...]

Every trial (18 per seed) is a `df-sweep run` trial at the default settings but 200 steps and no video (one key
varied per phenomenon) on the `analytic` prior, the exact denoiser of the toy world rendered with a given front
bias, so that what fails is SDS and not a prior's approximation; `--set prior.kind=toyworld` runs the shipped
prior. `--seeds K` runs seeds S … S+K−1 and pools their trials in every reading. The trials are read by the toy
world's exact detectors (`dreamfusion/toyworld/detectors.py`, the mesh evaluator's genus):
  - Janus: spotted objects ("a red sphere with a spot") in a world whose views look at the front with bias
    `--janus-bias`, with view-dependent prompting off and on; the rate of trials where the front's spot is also
    seen from behind (`gt_janus`);
  - over-saturation: a guidance ladder on colour prompts; the slope of `gt_colour_error` against ln(guidance),
    averaged over prompts (and `gt_saturation_excess` beside it);
  - mode collapse: the six colour-unspecified prompts ("a coloured cube"); the entropy in bits of the colour each
    trial became (`gt_colour_index`; log2 6 = 2.585 is six colours equally, 0 is every seed the same);
  - over-smoothing: tori; the share whose final mesh has genus 1 (the hole kept; `mesh_genus`).
Prints a row per trial, each phenomenon's reading with a 95% interval, writes `<out>/<phenomenon>.png` contact
sheets and the results page (`failure-modes.md` for the `toyworld` prior, `failure-modes-<prior>.md` for another),
and ends with exactly
    janus_off=<rate> janus_on=<rate> saturation_slope=<d colour_error / d ln guidance> colour_entropy_bits=<b>
    torus_genus1_rate=<r> trials=<n>
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from results_page import ResultsPage, add_arguments

from analysis.phenomena import entropy_bits, rate, slope
from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.toyworld import world
from dreamfusion.toyworld.detectors import FRONT_AREA

# Small versions of the sweeps of sweeps/phenomena/.
JANUS_PROMPTS = ["a red sphere with a spot", "a blue cube with a spot", "a green cylinder with a spot"]
SATURATION_PROMPTS = ["a purple sphere"]
GUIDANCE = [5.0, 20.0, 80.0]
TORUS_PROMPTS = ["a red torus", "a blue torus", "a green torus"]
#: What every trial runs with unless `--set` says otherwise: the analytic prior (its ε̂ is exact; scoring.model auto
#: is its own nearest-image scorer), 200 steps and no turntable video (`--set steps=400` for the sweeps' length).
DEFAULTS = ["prior.kind=analytic", "steps=200", "export.video=false"]


def trials(seed: int, janus_bias: float) -> list[tuple[str, dict[str, object]]]:
    """(phenomenon, trial overrides) of every trial, in the order they are reported."""
    out: list[tuple[str, dict[str, object]]] = []
    for prompt in JANUS_PROMPTS:
        for vdp in (False, True):
            sets = {"prompt": prompt, "camera.view_dependent_prompt": vdp, "prior.front_bias": janus_bias}
            out.append(("janus", sets))
    for prompt in SATURATION_PROMPTS:
        out += [("saturation", {"prompt": prompt, "sds.guidance_scale": g}) for g in GUIDANCE]
    out += [("diversity", {"prompt": p}) for p in world.coloured_prompts()]
    out += [("smoothing", {"prompt": p}) for p in TORUS_PROMPTS]
    return [(name, {**sets, "seed": seed}) for name, sets in out]


_LOADED: dict[str, tuple] = {}  # a worker's (prior, scorer) per prior and scoring config: loaded once each


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _run(args: tuple[dict[str, object], list[str], Path]) -> tuple[dict[str, float], str]:
    """The trial's final metrics (and its wall time), and the sha256 of the prior it ran on."""
    from dreamfusion.priors.base import load_prior
    from dreamfusion.scoring.metrics import load_scorer
    from dreamfusion.trial.loop import run_trial

    sets, overrides, folder = args
    pairs = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sets.items()]
    cfg = build_trial_config(apply_overrides({"device": "cpu"}, overrides + pairs), "--set")
    key = cfg.prior.model_dump_json() + cfg.scoring.model_dump_json()
    if key not in _LOADED:
        prior = load_prior(cfg.prior, cfg.device)
        _LOADED[key] = (prior, load_scorer(cfg.scoring, prior.device, prior))
    prior, scorer = _LOADED[key]
    started = time.perf_counter()
    result = run_trial(cfg, folder, prior=prior, scorer=scorer)
    return {**result.metrics, "wall_s": time.perf_counter() - started}, prior.fingerprint()


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a rate k/n."""
    if n == 0:
        return math.nan, math.nan
    z, p = 1.96, k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def flagged(rows: list[dict], key: str, test) -> list[float]:
    """1/0 per row from `test(row[key])`; rows without the metric are left out."""
    return [float(test(r[key])) for r in rows if key in r and not math.isnan(r[key])]


def summary(results: list[tuple[str, dict[str, object], dict[str, float]]]) -> tuple[dict[str, float], list[str]]:
    """The final line's numbers and the lines that explain them."""
    by = {
        name: [(s, r) for n, s, r in results if n == name] for name in ("janus", "saturation", "diversity", "smoothing")
    }
    lines = []
    nums: dict[str, float] = {}
    for vdp, key in ((False, "janus_off"), (True, "janus_on")):
        arm = [r for s, r in by["janus"] if s["camera.view_dependent_prompt"] is vdp]
        flags = flagged(arm, "gt_janus", bool)
        nums[key] = rate(flags)
        lo, hi = wilson(int(sum(flags)), len(flags))
        # a Janus rate means something only where the front formed at all: the spot seen head-on somewhere
        fronts = int(sum(flagged(arm, "gt_spot_area", lambda a: a >= FRONT_AREA)))
        lines.append(
            f"Janus, view-dependent prompts {'on' if vdp else 'off'}: {nums[key]:.2f} [{lo:.2f}, {hi:.2f}]; "
            f"a front formed in {fronts} of {len(arm)}"
        )
    slopes = []
    for prompt in SATURATION_PROMPTS:
        pts = [
            (math.log(float(s["sds.guidance_scale"])), r.get("gt_colour_error", math.nan)) for s, r in by["saturation"]
        ]
        pts = [(x, y) for (x, y), (s, _) in zip(pts, by["saturation"]) if s["prompt"] == prompt]
        slopes.append(slope([x for x, _ in pts], [y for _, y in pts]))
        lines.append(f"saturation, {prompt}: d colour_error / d ln guidance = {slopes[-1]:.3f}")
    nums["saturation_slope"] = sum(slopes) / len(slopes)
    choices = [r["gt_colour_index"] for _, r in by["diversity"] if "gt_colour_index" in r]
    nums["colour_entropy_bits"] = entropy_bits(choices)
    counts = [sum(int(c) == k for c in choices) for k in range(len(world.COLOURS))]
    lines.append(
        f"diversity: colours chosen {dict(zip(world.COLOURS, counts))}; max with {len(choices)} trials "
        f"{math.log2(max(1, min(len(choices), 6))):.3f} bits"
    )
    genus = flagged([r for _, r in by["smoothing"]], "mesh_genus", lambda g: g == 1)
    nums["torus_genus1_rate"] = rate(genus)
    if not genus:
        lines.append("smoothing: no trial logged mesh_genus (needs the mesh evaluator)")
    else:
        lo, hi = wilson(int(sum(genus)), len(genus))
        pieces = [int(r["mesh_components"]) for _, r in by["smoothing"] if "mesh_components" in r]
        lines.append(
            f"smoothing: tori with their hole (genus 1) {nums['torus_genus1_rate']:.2f} [{lo:.2f}, {hi:.2f}]; "
            f"genus {[int(r['mesh_genus']) for _, r in by['smoothing'] if 'mesh_genus' in r]}, pieces {pieces}"
        )
    return nums, lines


def sheets(results, out: Path, eval_views: int) -> list[Path]:
    """One contact sheet per phenomenon: each trial's final eval views, colour over textureless."""
    from toyworld_quality import contact_sheet

    paths = []
    for name in ("janus", "saturation", "diversity", "smoothing"):
        rows = [
            (f"{s['prompt']} {_label(s)}", Path(r["folder"]) / "final" / "views.png")
            for n, s, r in results
            if n == name
        ]
        if rows:
            paths.append(contact_sheet(rows, out / f"{name}.png", eval_views, columns=2, views=eval_views, order=None))
    return paths


def _label(sets: dict[str, object]) -> str:
    if "camera.view_dependent_prompt" in sets:
        return "VDP on" if sets["camera.view_dependent_prompt"] else "VDP off"
    return f"g={sets['sds.guidance_scale']:g}" if "sds.guidance_scale" in sets else ""


INTRO = """
SDS's known failure modes, counted by the toy world's exact detectors on small versions of the phenomena sweeps
(`sweeps/phenomena/`; what each detector reads is in
[Priors and the toy world](../guide/priors.md#failure-modes-in-the-toy-world)): Janus on spotted objects with
view-dependent prompts off and on, over-saturation along a guidance ladder, mode collapse on the colour-unspecified
prompts, over-smoothing on tori. Intervals are 95% (Wilson for rates); one contact sheet per phenomenon, each trial's
final eval ring from azimuth 0 in steps of 45°, colour over textureless.
"""


def load_average() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=1, help="seeds from --seed on, pooled in every reading")
    parser.add_argument("--out", type=Path, default=None, help="keep trial folders and contact sheets here")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="trials run at once")
    parser.add_argument(
        "--janus-bias", type=float, default=0.8, help="prior.front_bias of the Janus trials (share of head-on views)"
    )
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_arguments(parser)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="phenomena_"))
    plan = [trial for seed in range(args.seed, args.seed + args.seeds) for trial in trials(seed, args.janus_bias)]
    overrides = DEFAULTS + args.overrides
    cfg = build_trial_config(apply_overrides({"device": "cpu"}, overrides), "--set")
    kind = cfg.prior.kind
    suffix = "" if kind == "toyworld" else f"-{kind}"
    title = "Failure modes" + ("" if kind == "toyworld" else f" on the `{kind}` prior")
    page = ResultsPage.from_args(args, f"failure-modes{suffix}", title, INTRO)
    page.condition("torch threads", f"1 per worker, {args.workers} workers")
    print(f"out: {out}")
    page.print(
        f"{len(plan)} trials on the {kind} prior (Janus trials at front bias {args.janus_bias:g}), "
        f"{args.workers} at once; load average {' '.join(load_average())}"
    )
    jobs = [(sets, overrides, out / f"{i:02d}") for i, (_, sets) in enumerate(plan)]
    results, hashes = [], set()
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_one_thread) as pool:
        for (name, sets), job, (metrics, sha256) in zip(plan, jobs, pool.map(_run, jobs)):
            hashes.add(sha256)
            metrics["folder"] = str(job[2])
            results.append((name, sets, metrics))
            shown = {
                k: round(v, 3)
                for k, v in metrics.items()
                if k.startswith(("gt_janus", "gt_colour", "mesh_genus", "gt_iou", "gt_sat"))
            }
            page.print(
                f"{name:10s} {sets['prompt']:30s} {_label(sets):8s} {shown}  seed {sets['seed']}  "
                f"{metrics['wall_s']:.0f}s"
            )
    page.prior(kind, ", ".join(sorted(hashes)))
    nums, lines = summary(results)
    page.print()
    page.print(*lines)
    paths = sheets(results, out, cfg.eval.views)
    for path in paths:
        page.figure(path, f"{path.stem}: {kind} prior", f"phenomena_{path.stem}{suffix.replace('-', '_')}.png")
    load = load_average()
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    page.print(
        f"{(time.perf_counter() - started) / 60:.1f} min wall, peak RSS of a worker {rss:.0f} MB, load average "
        f"{' '.join(load)}"
    )
    page.print(
        f"janus_off={nums['janus_off']:.3f} janus_on={nums['janus_on']:.3f} "
        f"saturation_slope={nums['saturation_slope']:.4f} colour_entropy_bits={nums['colour_entropy_bits']:.3f} "
        f"torus_genus1_rate={nums['torus_genus1_rate']:.3f} trials={len(results)}"
    )
    page.write(rss)


if __name__ == "__main__":
    main()
