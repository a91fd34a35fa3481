"""Interval Score Matching (ISM; Liang et al. 2024, "LucidDreamer", CVPR):

    ∇θ L_ISM = E_t[ w(t) · (ε̂_φ(x_t; y, t) − ε_φ(x_s; ∅, s)) · ∂x/∂θ ],   s = t − δ_T
    x_s = DDIM inversion of x₀ with ∅, from max(s − n·δ_s, 0) up to s in strides of δ_s (n = `xs_inv_steps`)
    x_t = one DDIM inversion step from x_s with ε_φ(x_s; ∅, s)

SDS compares ε̂ with a fresh draw ε that has nothing to do with the render, and the mismatch is variance and
over-smoothing. ISM makes both ends deterministic functions of the render: x_t comes from inverting x₀ with the
unconditional prediction (so x_t is where the prior would start to land back near x₀), and the target is the
prior's own unconditional prediction one interval δ_T below, on the way there, instead of ε. The ladder starts from
x₀ noised with ε to its first rung (rung 0 with the defaults: ᾱ ≈ 1, almost x₀ itself).

Defaults are the authors' code's (EnVision-Research/LucidDreamer: `arguments/__init__.py` GuidanceParams and
`guidance/sd_utils.py`, `train_step_perpneg` and `add_noise_with_cfg`): δ_T = `delta_t` 80, δ_s = `xs_delta_t`
200, n = `xs_inv_steps` 5, η = `xs_eta` 0, an unconditional inversion (their `denoise_guidance_scale` 1), and
w(t) = sqrt((1 − ᾱ_t)/ᾱ_t) (`sds.weighting: x0`); their example configs set `delta_t` 25. Departures: δ_T is fixed
(their `annealing_intervals` move it between `delta_t` and `delta_t_start` 100 over the warm-up); an η > 0 step
adds η·σ·z to the deterministic step (`inversion.py`, as SDI's authors do) where theirs shrinks the direction term
and caps σ. w(t) is the authors' unless `sds.weighting` names another.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.sds.guidance import guided_noise, predict
from dreamfusion.sds.inversion import invert, ladder
from dreamfusion.sds.loss import Loss, LossContext, SDSOutput, noised


@registry.register
class ISM(Loss):
    name = "ism"
    default_weighting = "x0"  # the authors' x̂₀ target
    summary = "Interval Score Matching w(t)(ε̂(x_t; y, t) − ε(x_s; ∅, s)), x_s and x_t by DDIM inversion (LucidDreamer)"

    class Options(registry.Options):
        delta_t: int = Field(80, ge=1)
        """δ_T = t − s, the interval between the prediction and its target (the authors' 80)."""
        xs_delta_t: int = Field(200, ge=1)
        """δ_s, the stride of the inversion up to x_s (the authors' 200)."""
        xs_inv_steps: int = Field(5, ge=1)
        """n, the most inversion steps up to x_s, from max(s − n·δ_s, 0) (the authors' 5)."""
        xs_eta: float = Field(0.0, ge=0)
        """η of the inversion up to x_s: 0 is deterministic DDIM (the authors' 0)."""

    def prior_calls_per_step(self) -> int:
        """n unconditional steps up to x_s, one to x_t, and the guided pair at x_t."""
        return self.options.xs_inv_steps + 1 + 2

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
        cfg, o = self.cfg, self.options
        s = (t - o.delta_t).clamp(min=0)  # [B]
        start = (s - o.xs_delta_t * o.xs_inv_steps).clamp(min=0)  # [B]
        rungs = torch.cat([ladder(start, s, o.xs_delta_t, o.xs_inv_steps), t.view(1, -1)])  # [K + 1, B]: … s, t
        alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        x_start = noised(x.detach(), noise, prior.alphas_cumprod[start].view(-1, 1, 1, 1))

        def unconditional(z: Tensor, tk: Tensor) -> Tensor:  # ε_φ(z; ∅, t_k), the authors' inversion
            return predict(prior, z, tk, emb_uncond)[0]

        with torch.no_grad():
            x_t, eps_s = invert(prior, x_start, rungs, unconditional, o.xs_eta, noise)
            eps_hat = guided_noise(prior, x_t, t, emb_cond, emb_uncond, cfg.guidance_scale, cfg.guidance_convention)
        return self.gradient(x, eps_hat - eps_s, alpha_bar, eps_hat)
