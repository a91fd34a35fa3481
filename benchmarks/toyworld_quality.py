"""How good is SDS with the embedded toyworld prior at default settings? DreamFusion's R-precision table, toy world.

    python benchmarks/toyworld_quality.py [--prompts 36] [--seed 0] [--out DIR] [--ceiling DIR] [--set key=value ...]

Runs one default-settings `df-sweep run` trial (the shipped toyworld prior, every other key at its default, on the
CPU) per colour prompt and reads the final eval ring (8 views, 15° elevation) of each:
  - ground truth: R@1 of the true object's own renders from the same views (DreamFusion's "GT images" row);
  - SDS colour: R@1 of the lit colour renders among all 36 colour prompts;
  - SDS geometry: R@1 of the textureless (white, lit) renders among the 6 shape-only prompts;
  - CPU-minutes per trial: user + system CPU time of the trial (all threads), prior load excluded (once per worker).
`--prompts N` < 36 takes a stratified subset: prompt i is shape i mod 6 with colour (i + i // 6) mod 6, so the first
6 cover every shape and every colour once, the first 12 twice, and so on. `--set` changes the trial config for an
ablation (the table is then no longer "default settings"; the header says so).

Prints one row per trial, the table, `gt_iou` per shape, peak RSS, writes `<out>/trials.png` (a tile per trial: its
first 4 eval views, lit colour over textureless; a shape per row and a colour per column when all 36 ran) and
`<out>/results.json` (every trial's metrics), and, as its last line,
    gt_r1=<x> color_r1=<y> geometry_r1=<z> cpu_min_per_trial=<m> prompts=<n>
Targets: color_r1 ≥ 0.8 (moonshot ≥ 0.97 × gt_r1, DreamFusion's ratio on COCO), geometry_r1 ≥ 0.6, ≤ 3 CPU-min.
`--ceiling DIR` reads the `results.json` of a run with `--set prior.kind=analytic` (the exact denoiser of a finite
set of renders) and prints each shape's `gt_iou` as a share of it, on the prompts both runs share. It is a
reference, not an upper bound (docs/results/toyworld-quality.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.priors.base import load_prior
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.toyworld import world
from dreamfusion.trial.loop import run_trial

INTRO = """
How good is SDS with the toy-world prior? DreamFusion's R-precision table for the toy world: one default-settings
trial per colour prompt (100 steps, small NeRF, 32 px, 2 views per step, guidance 20, `anneal` schedule, seed as
given; a stratified subset of the 36 prompts covers every shape and colour evenly), scored on the final eval ring
(8 views, 15° elevation) by the toy CLIP against all 36 colour prompts (colour) and the 6 shape-only prompts
(textureless geometry), with the exact ground-truth scores `gt_iou` and `gt_colour_error` beside. The NeRF fitted to
the truth with no prior is on [The NeRF's ceiling](nerf-ceiling.md).
"""


def stratified_prompts(n: int) -> list[str]:
    shapes, colours = list(world.SHAPES), list(world.COLOURS)
    k = len(shapes)
    return [f"a {colours[(i + i // k) % len(colours)]} {shapes[i % k]}" for i in range(n)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_one(prompt: str, seed: int, overrides: list[str], prior, scorer, out: Path) -> dict[str, float]:
    cfg = build_trial_config(apply_overrides({"prompt": prompt, "seed": seed, "device": "cpu"}, overrides), "--set")
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    result = run_trial(cfg, out, prior=prior, scorer=scorer)
    return {**result.metrics, "cpu_min": (cpu_seconds() - cpu0) / 60, "wall_s": time.perf_counter() - wall0}


def contact_sheet(
    rows: list[tuple[str, Path]],
    path: Path,
    eval_views: int,
    columns: int = 6,
    views: int = 4,
    order: list[str] | None = world.colour_prompts(),
) -> Path:
    """One tile per trial, labelled, in `order` of the labels (the world's shape-major order: with all 36 prompts a
    shape per row, a colour per column; None keeps the rows' order): the first `views` of its `eval_views` final
    views (lit colour over textureless), at half size."""
    tiles = []
    for prompt, views_png in rows if order is None else sorted(rows, key=lambda row: order.index(row[0])):
        im = Image.open(views_png).convert("RGB")
        im = im.crop((0, 0, im.width * min(views, eval_views) // eval_views, im.height))
        tiles.append((prompt, im.resize((im.width // 2, im.height // 2), Image.BILINEAR)))
    label, (w, h) = 14, tiles[0][1].size
    n_rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (w * min(columns, len(tiles)), (h + label) * n_rows), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (prompt, im) in enumerate(tiles):
        x, y = (i % columns) * w, (i // columns) * (h + label)
        draw.text((x + 4, y + 1), prompt, fill="black")
        sheet.paste(im, (x, y + label))
    sheet.save(path)
    return path


def means(results: dict[str, dict[str, float]]) -> dict[str, float]:
    """The mean over trials of every metric: R@1 averaged over prompts is the fraction of prompts retrieved."""
    keys = next(iter(results.values())).keys()
    return {k: statistics.fmean(r[k] for r in results.values()) for k in keys}


def table(m: dict[str, float], n: int, prior: str, ablation: list[str]) -> list[str]:
    gt, colour = m["gt_clip_r_precision"], m["clip_r_precision"]
    setting = "default settings" if not ablation else "with " + " ".join(ablation)
    return [
        f"Toy world, {n} prompts, {setting}: R@1 over the final eval ring",
        f"{'':28s} {'colour R@1':>10s} {'geometry R@1':>12s} {'CPU-min/trial':>13s}",
        f"{'ground-truth renders':28s} {gt:10.3f} {m['gt_clip_r_precision_geometry']:12.3f}",
        f"{'SDS, ' + prior + ' prior':28s} {colour:10.3f} {m['clip_r_precision_geometry']:12.3f} {m['cpu_min']:13.2f}",
        f"{'SDS / ground truth':28s} {colour / gt if gt else float('nan'):10.3f}",
        f"mean gt_iou {m['gt_iou']:.3f}  mean gt_colour_error {m['gt_colour_error']:.3f}  "
        f"mean wall {m['wall_s']:.0f} s/trial",
    ]


def markdown_tables(m: dict[str, float], shapes: dict[str, float], prior: str, n: int) -> str:
    """The R@1 table and `gt_iou` per shape, for the results page."""
    rows = [
        f"| R@1 on the final eval ring ({n} prompts) | colour | textureless geometry | CPU-min / trial |",
        "|---|---|---|---|",
        f"| ground-truth renders of the true object | {m['gt_clip_r_precision']:.3f} | "
        f"{m['gt_clip_r_precision_geometry']:.3f} | |",
        f"| SDS with the `{prior}` prior | **{m['clip_r_precision']:.3f}** | **{m['clip_r_precision_geometry']:.3f}** "
        f"| **{m['cpu_min']:.2f}** ({m['wall_s']:.0f} s wall) |",
        "",
        "| mean `gt_iou` | " + " | ".join(shapes) + " | mean `gt_colour_error` |",
        "|---|" + "---|" * (len(shapes) + 1),
        f"| {m['gt_iou']:.3f} | "
        + " | ".join(f"{v:.3f}" for v in shapes.values())
        + f" | {m['gt_colour_error']:.3f} |",
    ]
    return "\n".join(rows)


def by_shape(results: dict[str, dict[str, float]], metric: str = "gt_iou") -> dict[str, float]:
    """The mean of `metric` per shape, in the world's shape order: a shape the NeRF renders badly (the pyramid's
    apex, the torus's hole) hides in the mean over all prompts."""
    shapes = {shape: [r[metric] for p, r in results.items() if p.endswith(f" {shape}")] for shape in world.SHAPES}
    return {shape: statistics.fmean(values) for shape, values in shapes.items() if values}


def against_ceiling(results: dict[str, dict[str, float]], ceiling: dict[str, dict[str, float]]) -> list[str]:
    shared = {p: r for p, r in results.items() if p in ceiling}
    if not shared:
        return ["ceiling: no prompt in common"]
    reached = {p: ceiling[p] for p in shared}
    ours, best = by_shape(shared), by_shape(reached)
    cells = "  ".join(f"{s} {ours[s]:.3f}/{best[s]:.3f}={ours[s] / best[s]:.2f}" for s in ours)
    mean_ours, mean_best = (statistics.fmean(r["gt_iou"] for r in rs.values()) for rs in (shared, reached))
    return [f"gt_iou / analytic prior's ({len(shared)} prompts): mean {mean_ours:.3f}/{mean_best:.3f}", cells]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=len(world.colour_prompts()))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep trial folders and trials.png here")
    parser.add_argument("--ceiling", type=Path, default=None, help="an analytic-prior run's --out, to compare gt_iou")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    add_arguments(parser)
    args = parser.parse_args()
    page = ResultsPage.from_args(args, "toyworld-quality", "Toy-world quality", INTRO)
    if not 1 <= args.prompts <= len(world.colour_prompts()):
        parser.error(f"--prompts: expected 1..{len(world.colour_prompts())}")
    out = args.out or Path(tempfile.mkdtemp(prefix="toyworld_quality_"))
    prompts = stratified_prompts(args.prompts)

    cfg = build_trial_config(apply_overrides({"device": "cpu"}, args.overrides), "--set")
    prior = load_prior(cfg.prior, cfg.device)
    scorer = load_scorer(cfg.scoring, prior.device, prior)
    page.prior(cfg.prior.kind, prior.fingerprint())
    page.condition("torch threads", torch.get_num_threads())
    print(f"out: {out}")
    page.print(f"prior: {prior.describe()}", f"scorer: {scorer.name}")
    page.print(
        f"{'prompt':22s} {'gt R@1':>6s} {'colour':>6s} {'geom':>6s} {'gt_iou':>6s} {'col_err':>7s} "
        f"{'CPU-min':>7s} {'wall s':>6s}"
    )
    results: dict[str, dict[str, float]] = {}
    views: list[tuple[str, Path]] = []
    for i, prompt in enumerate(prompts):
        trial_dir = out / f"{i:02d}"
        r = results[prompt] = run_one(prompt, args.seed, args.overrides, prior, scorer, trial_dir)
        views.append((prompt, trial_dir / "final" / "views.png"))
        page.print(
            f"{prompt:22s} {r['gt_clip_r_precision']:6.3f} {r['clip_r_precision']:6.3f} "
            f"{r['clip_r_precision_geometry']:6.3f} {r['gt_iou']:6.3f} {r['gt_colour_error']:7.3f} "
            f"{r['cpu_min']:7.2f} {r['wall_s']:6.0f}"
        )

    sheet = contact_sheet(views, out / "trials.png", cfg.eval.views)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    m = means(results)
    page.print()
    page.print(*table(m, len(results), cfg.prior.kind, args.overrides))
    shapes = by_shape(results)
    page.print("gt_iou by shape: " + "  ".join(f"{shape} {v:.3f}" for shape, v in shapes.items()))
    page.markdown(markdown_tables(m, shapes, cfg.prior.kind, len(results)))
    if args.ceiling:
        page.print(*against_ceiling(results, json.loads((args.ceiling / "results.json").read_text())))
    page.print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    page.figure(sheet, f"the {len(results)} prompts after the trials, colour over textureless", "toyworld_quality.png")
    page.print(
        f"gt_r1={m['gt_clip_r_precision']:.3f} color_r1={m['clip_r_precision']:.3f} "
        f"geometry_r1={m['clip_r_precision_geometry']:.3f} cpu_min_per_trial={m['cpu_min']:.2f} "
        f"prompts={len(results)}"
    )
    page.write()


if __name__ == "__main__":
    main()
