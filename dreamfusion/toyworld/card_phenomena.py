"""The model card's readings of what the failure-mode testbed needs from the prior itself, on its own samples:
whether it learned that the spot is on the front (seen in front views, not in back views, and how often without a
view in the caption, which is the front bias it learned), and whether "a coloured cube" spreads over the six
colours (the target of the diversity measurements). Samples are 2D images, so these read pixels: a spot is a
patch of near-black pixels, a colour is the nearest world colour to the mean of the object's pixels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from dreamfusion.toyworld import world
from dreamfusion.toyworld.ground_truth import nearest_colour

#: A sample pixel is spot-black when its brightest channel is below this. The darkest a lit world colour gets is
#: the ambient 0.45 × its brightest channel (≥ 0.3, green), so only the spot passes.
BLACK = 0.2
#: A sample shows a spot when at least this many pixels are black (the true spot head-on is 40–90 pixels at 32 px).
SPOT_PIXELS = 4
#: A sample pixel belongs to the object when it is this far (RGB distance) from the white background.
OBJECT = 0.25


def shows_spot(images: Tensor) -> Tensor:
    """[N] bool: which samples [N, 3, H, W] in [0, 1] show the spot."""
    black = images.max(dim=1).values < BLACK  # [N, H, W]
    return black.flatten(1).sum(-1) >= SPOT_PIXELS


def sample_colours(images: Tensor) -> list[int | None]:
    """The nearest world colour (index in `world.COLOURS`) to each sample's mean object pixel; None when a sample
    shows no object."""
    out: list[int | None] = []
    for image in images:  # [3, H, W]
        mask = (image - 1).norm(dim=0) > OBJECT  # [H, W]
        out.append(nearest_colour(image[:, mask].mean(-1)) if mask.any() else None)
    return out


def spot_rates(sample: Callable[[list[str], int], Tensor], per_prompt: int) -> dict[str, float]:
    """Share of samples showing the spot, over the 36 spotted prompts, for each caption form: no view (what SDS
    without view-dependent prompts asks for), front, side and back view; and over the plain colour prompts (0)."""
    rates = {}
    forms = {"none": "", "front": ", front view", "side": ", side view", "back": ", back view"}
    for name, suffix in forms.items():
        images = sample([p + suffix for p in world.spot_prompts()], per_prompt)
        rates[name] = float(shows_spot(images).float().mean())
    rates["plain"] = float(shows_spot(sample(world.colour_prompts(), per_prompt)).float().mean())
    return rates


def coloured_spread(sample: Callable[[list[str], int], Tensor], per_prompt: int) -> dict[str, Any]:
    """How the samples of the six "a coloured <shape>" prompts spread over the six colours: counts per colour
    (world order) and the entropy in bits (log2 6 = 2.585 is uniform)."""
    from analysis.phenomena import entropy_bits

    choices = sample_colours(sample(world.coloured_prompts(), per_prompt))
    counts = [sum(c == k for c in choices) for k in range(len(world.COLOURS))]
    found = [float(c) for c in choices if c is not None]
    return {"counts": counts, "no_object": len(choices) - len(found), "entropy_bits": entropy_bits(found)}
