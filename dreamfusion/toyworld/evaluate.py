"""The model card's numbers: toy-CLIP R@1 on held-out ground-truth renders, and on the prior's own samples.

R@1 is `dreamfusion.scoring.r_precision` — the metric trials log — so a hit means the true prompt scores strictly
above every other prompt of the set: colour renders among the 36 colour prompts, textureless renders among the
6 shape-only prompts. Held-out renders use seeds the training data never used (it is rendered with seed 0).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion import images as image_io
from dreamfusion.scoring.metrics import Scorer, r_precision
from dreamfusion.toyworld import world
from dreamfusion.toyworld.card_phenomena import coloured_spread, spot_rates
from dreamfusion.toyworld.prior import ToyWorldPrior, load_toyworld_prior

#: Held-out ground-truth renders of the card.
HELDOUT_SEED = 1000
#: The small fixed set the tests re-score: 2 views of every prompt from this seed.
FIXED_SET_SEED, FIXED_SET_VIEWS = 7, 2


def heldout_renders(seed: int, views: int, resolution: int = 32) -> tuple[Tensor, Tensor]:
    """Colour renders [36·V, 3, H, W] of the colour prompts and textureless renders [6·V, 3, H, W] of the shape
    prompts, grouped by prompt in `world.colour_prompts()` / `world.shape_prompts()` order."""
    g = torch.Generator().manual_seed(seed)
    colour = torch.cat([world.sample_views(p, views, resolution, g) for p in world.colour_prompts()])
    shape = torch.cat([world.sample_views(p, views, resolution, g) for p in world.shape_prompts()])
    return colour, shape


def retrieval_r1(scorer: Scorer, images: Tensor, prompts: list[str]) -> float:
    """Mean R@1 of images grouped by prompt (equal groups, in `prompts` order) among `prompts`."""
    groups = images.chunk(len(prompts))
    return sum(r_precision(scorer, x, p, prompts) for x, p in zip(groups, prompts)) / len(prompts)


@torch.no_grad()
def sample(
    prior: ToyWorldPrior,
    weights: Path,
    prompts: list[str],
    n: int,
    guidance: float,
    steps: int,
    seed: int = 0,
    eta: float = 0.0,
) -> Tensor:
    """[len(prompts)·n, 3, S, S] DDIM samples with classifier-free guidance, grouped by prompt; η = 0 is
    deterministic DDIM, η = 1 ancestral (DDPM-like) sampling."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_pretrained(weights, subfolder="scheduler")
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    cond = prior.text_embeddings(prompts).repeat_interleave(n, 0)  # [B, L, D]
    uncond = prior.text_embedding("").expand_as(cond)
    size = prior.image_size
    x = torch.randn((cond.shape[0], 3, size, size), generator=g).to(prior.device)
    for t in scheduler.timesteps:
        tt = torch.full((2 * x.shape[0],), int(t), device=prior.device, dtype=torch.long)
        eps_u, eps_c = prior.predict_noise(torch.cat([x, x]), tt, torch.cat([uncond, cond])).chunk(2)
        x = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x, eta=eta, generator=g).prev_sample
    return prior.from_model_space(x)


def write_card_scores(
    weights: Path,
    views: int,
    samples: int,
    guidance: float,
    steps: int,
    grid: Path,
    sweep: tuple[float, ...] = (1.0, 5.0, 7.5),
    eta: float = 1.0,
    log: Callable[[str], None] = print,
) -> dict:
    """Score the weights, write `<weights>/scores.json` and the sample grid (one row per prompt); return the scores."""
    from dreamfusion.toyworld.scorer import load_toyworld_scorer

    started = time.perf_counter()
    prior = load_toyworld_prior("cpu", torch.float32, weights)
    scorer = load_toyworld_scorer("cpu", weights)
    colour_prompts, shape_prompts = world.colour_prompts(), world.shape_prompts()

    colour, shape = heldout_renders(HELDOUT_SEED, views)
    heldout = {
        "seed": HELDOUT_SEED,
        "views_per_prompt": views,
        "colour_r1": retrieval_r1(scorer, colour, colour_prompts),
        "geometry_r1": retrieval_r1(scorer, shape, shape_prompts),
    }
    rng = torch.Generator().manual_seed(HELDOUT_SEED + 1)
    spotted = torch.cat([world.sample_views(p, views, 32, rng, front_bias=1.0) for p in world.spot_prompts()])
    heldout["spot_r1"] = retrieval_r1(scorer, spotted, world.spot_prompts())  # front views: the spot shows
    log(f"held-out ground truth: {heldout}")

    colour, shape = heldout_renders(FIXED_SET_SEED, FIXED_SET_VIEWS)
    fixed = {
        "seed": FIXED_SET_SEED,
        "views_per_prompt": FIXED_SET_VIEWS,
        "colour_r1": retrieval_r1(scorer, colour, colour_prompts),
        "geometry_r1": retrieval_r1(scorer, shape, shape_prompts),
    }
    log(f"fixed test set: {fixed}")

    prompts = colour_prompts + shape_prompts
    imgs = sample(prior, weights, prompts, samples, guidance, steps, eta=eta)
    split = len(colour_prompts) * samples
    drawn = {
        "guidance": guidance,
        "ddim_steps": steps,
        "eta": eta,
        "per_prompt": samples,
        "colour_r1": retrieval_r1(scorer, imgs[:split], colour_prompts),
        "geometry_r1": retrieval_r1(scorer, imgs[split:], shape_prompts),
    }
    log(f"samples: {drawn}")
    image_io.save_grid(imgs, grid, samples)

    by_guidance = {}
    for g in sweep:
        x = sample(prior, weights, colour_prompts, max(1, samples // 4), g, steps, seed=1, eta=eta)
        by_guidance[str(g)] = retrieval_r1(scorer, x, colour_prompts)
        log(f"guidance {g}: colour sample R@1 {by_guidance[str(g)]:.3f}")
    by_guidance[str(guidance)] = drawn["colour_r1"]
    x = sample(prior, weights, colour_prompts, max(1, samples // 4), guidance, steps, seed=1, eta=0.0)
    deterministic = retrieval_r1(scorer, x, colour_prompts)
    log(f"deterministic DDIM (η = 0) at guidance {guidance}: colour sample R@1 {deterministic:.3f}")

    def draw(prompts: list[str], n: int) -> Tensor:
        return sample(prior, weights, prompts, n, guidance, steps, seed=2, eta=eta)

    spots = spot_rates(draw, max(1, samples // 2))
    log(f"share of samples showing the spot, by caption form: {spots}")
    coloured = coloured_spread(draw, samples)
    log(f"'a coloured <shape>' samples per colour: {coloured}")

    scores = {
        "heldout": heldout,
        "fixed_set": fixed,
        "samples": drawn,
        "sample_colour_r1_by_guidance": dict(sorted(by_guidance.items(), key=lambda kv: float(kv[0]))),
        "sample_colour_r1_deterministic_ddim": deterministic,
        "sample_spot_rate": spots,
        "sample_coloured": coloured,
        "summary": {
            "gt_colour_r1": round(heldout["colour_r1"], 4),
            "gt_geometry_r1": round(heldout["geometry_r1"], 4),
            "sample_colour_r1": round(drawn["colour_r1"], 4),
            "sample_geometry_r1": round(drawn["geometry_r1"], 4),
            "sample_spot_rate_no_view": round(spots["none"], 4),
            "sample_spot_rate_back_view": round(spots["back"], 4),
            "sample_coloured_entropy_bits": round(coloured["entropy_bits"], 4),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    (Path(weights) / "scores.json").write_text(json.dumps(scores, indent=2))
    return scores
