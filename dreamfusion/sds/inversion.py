"""DDIM inversion: a render x₀ walked up a ladder of timesteps with the prior's own predictions, DDIM sampling
(Song et al. 2021, eq. 12) run backwards. ISM (`ism.py`) and SDI (`sdi.py`) noise the render this way instead of
with a fresh draw ε, so that x_t is the point the prior itself would denoise back to (about) x₀.

Every view of a batch climbs its own ladder (its own t) in the same denoiser calls: a ladder is a [K + 1, B] table of
timesteps, and a view that has reached its top rides along unchanged while the others climb.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import Tensor

from dreamfusion.priors.base import Prior

#: ε̂(x, t) of the inversion: x [B, C, h, w], t [B] long → [B, C, h, w]; one batched denoiser call.
Predict = Callable[[Tensor, Tensor], Tensor]


def ladder(start: Tensor, end: Tensor, stride: int, steps: int) -> Tensor:
    """[K + 1, B] long: for each view start, start + stride, … (at most `steps` strides), every rung clipped at end,
    and end itself as the last. Rungs past the point where every view has reached its end are dropped (K ≤ steps + 1),
    so a batch pays only for its longest climb. start, end [B] long, start ≤ end."""
    k = torch.arange(steps + 1, device=start.device).view(-1, 1)  # [steps + 1, 1]
    rungs = torch.cat([torch.minimum(start + k * stride, end), end.view(1, -1)])  # [steps + 2, B]
    climbing = int((rungs[1:] != rungs[:-1]).any(dim=1).sum())  # a prefix: once at its end a view stays there
    return rungs[: climbing + 1]


def ddim_step(x: Tensor, eps: Tensor, ab_from: Tensor, ab_to: Tensor, eta: float, z: Tensor | None) -> Tensor:
    """One DDIM step from noise level ᾱ_from to ᾱ_to (up, for an inversion), with prediction ε of x:

        x̂₀ = (x − √(1 − ᾱ_from)·ε) / √ᾱ_from,   x' = √ᾱ_to·x̂₀ + √(1 − ᾱ_to)·ε + η·σ·z
        σ² = (1 − ᾱ_from)/(1 − ᾱ_to) · (1 − ᾱ_to/ᾱ_from)

    σ is DDIM's (eq. 16) for the step back down; SDI's authors add η·σ·z on top of the deterministic step, as here.
    x, eps, z [B, C, h, w]; ab_from, ab_to [B, 1, 1, 1]; z is needed only when η > 0."""
    x0_hat = (x - (1 - ab_from).sqrt() * eps) / ab_from.sqrt()
    stepped = ab_to.sqrt() * x0_hat + (1 - ab_to).sqrt() * eps
    if eta == 0:
        return stepped
    assert z is not None, "a stochastic step (η > 0) needs its noise z"
    sigma = ((1 - ab_from) / (1 - ab_to) * (1 - ab_to / ab_from)).clamp(min=0).sqrt()
    return stepped + eta * sigma * z


def invert(prior: Prior, x: Tensor, rungs: Tensor, predict: Predict, eta: float, seed: Tensor) -> tuple[Tensor, Tensor]:
    """x [B, C, h, w] at rungs[0] → x at rungs[-1], one denoiser call per step up the [K + 1, B] ladder; also the last
    prediction ε̂(x at rungs[-2], rungs[-2]) (ISM's target). With η > 0 each step draws z [B, C, h, w], in order, from
    a generator seeded by the tensor `seed` (the step's noise ε)."""
    assert rungs.shape[0] >= 2, "an inversion climbs at least one rung"
    ab = prior.alphas_cumprod[rungs].view(*rungs.shape, 1, 1, 1)  # [K + 1, B, 1, 1, 1]
    generator = generator_from(seed) if eta > 0 else None  # hashing ε costs a copy: only when it is used
    eps = x  # overwritten by the first step's prediction
    for k in range(rungs.shape[0] - 1):
        eps = predict(x, rungs[k])
        z = torch.randn(x.shape, generator=generator).to(x) if eta > 0 else None
        stepped = ddim_step(x, eps, ab[k], ab[k + 1], eta, z)
        x = torch.where((rungs[k + 1] == rungs[k]).view(-1, 1, 1, 1), x, stepped)  # a view at its top stays
    return x, eps


def generator_from(noise: Tensor) -> torch.Generator:
    """A generator seeded by the bits of the step's noise ε. A loss receives one random draw, ε, from the trial's
    checkpointed generator; draws made from this one are as reproducible (same seed, a resumed trial: bitwise)."""
    digest = hashlib.sha256(noise.detach().float().cpu().numpy().tobytes()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
