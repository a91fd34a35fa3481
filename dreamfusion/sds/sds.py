"""Score Distillation Sampling (DreamFusion, Poole et al. 2023), eq. 3:

    ∇θ L_SDS = E_{t,ε}[ w(t) · (ε̂_φ(z_t; y, t) − ε) · ∂x/∂θ ],   z_t = α_t·x + σ_t·ε

The denoiser runs without autograd; the gradient w(t)(ε̂ − ε) is injected at x through a surrogate loss whose
derivative with respect to x is exactly that gradient (averaged over the batch).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.sds.guidance import guided_noise
from dreamfusion.sds.loss import Loss, LossContext, SDSOutput, noised


@registry.register
class SDS(Loss):
    name = "sds"
    version = "2"  # 2: a non-finite residual element gives a zero gradient element (was nan_to_num: ±float max for inf)
    summary = "DreamFusion's score distillation w(t)(ε̂ − ε) (Poole et al. 2023, eq. 3); `sds.jacobian` ablates it"
    options = ("sds.baseline", "sds.jacobian")

    def __call__(
        self,
        prior: Prior,
        x: Tensor,
        t: Tensor,
        emb_cond: Tensor,
        emb_uncond: Tensor,
        noise: Tensor,
        context: LossContext | None = None,
    ) -> SDSOutput:
        if self.cfg.jacobian:
            return self.diffusion_loss(prior, x, t, emb_cond, emb_uncond, noise)
        cfg = self.cfg
        alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        z_t = noised(x.detach(), noise, alpha_bar)
        with torch.no_grad():
            eps_hat = guided_noise(prior, z_t, t, emb_cond, emb_uncond, cfg.guidance_scale, cfg.guidance_convention)
        residual = eps_hat - noise if cfg.baseline else eps_hat
        return self.gradient(x, residual, alpha_bar, eps_hat)

    def diffusion_loss(
        self, prior: Prior, x: Tensor, t: Tensor, emb_cond: Tensor, emb_uncond: Tensor, noise: Tensor
    ) -> SDSOutput:
        """The ablation SDS simplifies: w(t)‖ε̂(z_t) − ε‖²/2 differentiated through the denoiser's Jacobian
        ∂ε̂/∂z_t. The denoiser's parameters stay frozen; only its input carries a gradient. Nothing is zeroed here:
        a NaN in ε̂ would flow back through the Jacobian whatever its residual is set to, so the loss shows it."""
        cfg = self.cfg
        alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        z_t = noised(x, noise, alpha_bar)
        eps_hat = guided_noise(prior, z_t, t, emb_cond, emb_uncond, cfg.guidance_scale, cfg.guidance_convention)
        residual = eps_hat - noise
        w = self.weight(alpha_bar)
        loss = 0.5 * (w * residual**2).sum() / x.shape[0]
        nonfinite = 1 - torch.isfinite(residual).float().mean()
        return SDSOutput(loss=loss, grad=(w * residual).detach(), eps_hat=eps_hat.detach(), nonfinite=nonfinite)
