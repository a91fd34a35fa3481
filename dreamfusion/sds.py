"""Score Distillation Sampling (DreamFusion, Poole et al. 2023), eq. 3:

    ∇θ L_SDS = E_{t,ε}[ w(t) · (ε̂_φ(z_t; y, t) − ε) · ∂x/∂θ ],   z_t = α_t·x + σ_t·ε

The denoiser runs without autograd; the gradient w(t)(ε̂ − ε) is injected at x through a surrogate loss whose
derivative with respect to x is exactly that gradient (averaged over the batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dreamfusion.config import SDSConfig
from dreamfusion.priors.base import Prior


@dataclass
class SDSOutput:
    loss: Tensor  # [] surrogate loss; its gradient w.r.t. x is `grad / B`
    grad: Tensor  # [B, C, h, w] w(t)(ε̂ − ε), after clipping
    eps_hat: Tensor  # [B, C, h, w] guided prediction


def weight(alpha_bar: Tensor, kind: str) -> Tensor:
    """w(t) from ᾱ_t: DreamFusion's σ_t², uniform, or Fantasia3D's sqrt(ᾱ)(1 − ᾱ)."""
    if kind == "sds":
        return 1 - alpha_bar
    if kind == "uniform":
        return torch.ones_like(alpha_bar)
    if kind == "fantasia3d":
        return alpha_bar.sqrt() * (1 - alpha_bar)
    raise ValueError(f"unknown weighting {kind!r}")


def guidance_multiplier(scale: float, convention: str) -> float:
    """s in ε_u + s(ε_c − ε_u). The paper's (1 + ω)ε_c − ωε_u is the same form with s = ω + 1."""
    return scale if convention == "diffusers" else scale + 1.0


def guided_noise(prior: Prior, z_t: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor,
                 cfg: SDSConfig) -> Tensor:
    """Classifier-free guided ε̂, one batched denoiser call for both halves."""
    b = z_t.shape[0]
    eps_u, eps_c = prior.predict_noise(
        torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([emb_uncond, emb_cond])
    ).split(b)  # [B, C, h, w] each
    s = guidance_multiplier(cfg.guidance_scale, cfg.guidance_convention)
    return eps_u + s * (eps_c - eps_u)


def sds(prior: Prior, x: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor, cfg: SDSConfig,
        noise: Tensor) -> SDSOutput:
    """x [B, C, h, w] in model space (requires grad), t [B] long, noise ε [B, C, h, w]."""
    alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    z_t = alpha_bar.sqrt() * x.detach() + (1 - alpha_bar).sqrt() * noise
    with torch.no_grad():
        eps_hat = guided_noise(prior, z_t, t, emb_cond, emb_uncond, cfg)
    residual = eps_hat - noise if cfg.baseline else eps_hat
    grad = weight(alpha_bar, cfg.weighting) * residual
    if cfg.grad_clip is not None:
        grad = grad.clamp(-cfg.grad_clip, cfg.grad_clip)
    grad = torch.nan_to_num(grad)
    target = (x - grad).detach()
    loss = 0.5 * ((x - target) ** 2).sum() / x.shape[0]
    return SDSOutput(loss=loss, grad=grad, eps_hat=eps_hat)


def diffusion_loss(prior: Prior, x: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor, cfg: SDSConfig,
                   noise: Tensor) -> SDSOutput:
    """The ablation SDS simplifies: w(t)‖ε̂(z_t) − ε‖²/2 differentiated through the denoiser's Jacobian ∂ε̂/∂z_t.

    The denoiser's parameters stay frozen; only its input carries a gradient.
    """
    alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    z_t = alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * noise
    eps_hat = guided_noise(prior, z_t, t, emb_cond, emb_uncond, cfg)
    residual = eps_hat - noise
    w = weight(alpha_bar, cfg.weighting)
    loss = 0.5 * (w * residual**2).sum() / x.shape[0]
    return SDSOutput(loss=loss, grad=(w * residual).detach(), eps_hat=eps_hat.detach())
