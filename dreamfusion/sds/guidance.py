"""Classifier-free guidance: both ε̂ halves from one batched denoiser call, and the two conventions in the wild."""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion.priors.base import Prior
from dreamfusion.timing import phase


def guidance_multiplier(scale: float, convention: str) -> float:
    """s in ε_u + s(ε_c − ε_u). The paper's (1 + ω)ε_c − ωε_u is the same form with s = ω + 1."""
    return scale if convention == "diffusers" else scale + 1.0


def predict(prior: Prior, z_t: Tensor, t: Tensor, *embs: Tensor) -> tuple[Tensor, ...]:
    """ε̂(z_t; t, emb) [B, C, h, w] for each [B, ...] embedding in `embs`, from one denoiser call of k·B."""
    with phase("sds/prior"):
        out = prior.predict_noise_repeated(z_t, t, torch.cat(embs))
    return tuple(out.split(z_t.shape[0]))


def predict_pair(prior: Prior, z_t: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor) -> tuple[Tensor, Tensor]:
    """(ε_u, ε_c), each [B, C, h, w]: the unconditional and conditional predictions, one denoiser call of 2B."""
    eps_u, eps_c = predict(prior, z_t, t, emb_uncond, emb_cond)
    return eps_u, eps_c


def guided_noise(
    prior: Prior, z_t: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor, scale: float, convention: str
) -> Tensor:
    """Classifier-free guided ε̂ [B, C, h, w]."""
    eps_u, eps_c = predict_pair(prior, z_t, t, emb_cond, emb_uncond)
    s = guidance_multiplier(scale, convention)
    return eps_u + s * (eps_c - eps_u)
