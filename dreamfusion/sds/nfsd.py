"""Noise-Free Score Distillation (NFSD; Katzir et al. 2023, "Noise-Free Score Distillation"):

    ∇θ L_NFSD = E_{t,ε}[ w(t) · (δ_D + s·δ_C) · ∂x/∂θ ],   z_t = α_t·x + σ_t·ε
    δ_C = ε̂_φ(z_t; y, t) − ε̂_φ(z_t; ∅, t)                          (the condition direction)
    δ_D = ε̂_φ(z_t; ∅, t)                          for t < 200 of 1000  (denoising an almost clean image)
    δ_D = ε̂_φ(z_t; ∅, t) − ε̂_φ(z_t; y_neg, t)    otherwise            (the domain direction, away from y_neg)

The paper decomposes the guided score into a noise term, a domain term and a condition term, and drops the noise
term that SDS cancels only in expectation; the negative prompt y_neg (`sds.negative_prompt`) describes the
out-of-domain images the render should move away from: the paper's words by default, where the prior's
vocabulary is open. s multiplies δ_C as in the guided prediction
ε_u + s(ε_c − ε_u): `guidance_scale` in the diffusers convention (the paper's 7.5), ω + 1 in the paper convention.

On a prior whose closed vocabulary lacks those words (the toy world's), y_neg defaults to "", the unconditional
prompt:
then ε̂(z_t; y_neg) = ε_u, δ_D = 0 for t ≥ 200, and NFSD reduces to w(t)(ε_u·[t < 200] + s·δ_C), that is CSD plus
the unconditional prediction at small t.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.sds.guidance import guidance_multiplier, predict, predict_pair
from dreamfusion.sds.loss import Loss, LossContext, SDSOutput, noised

#: Below this fraction of T the domain term is ε_u alone (the paper's t < 200 of T = 1000).
SMALL_T = 0.2
#: The paper's negative prompt: words a text-to-image model associates with a bad image.
PAPER_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"
)


@registry.register
class NFSD(Loss):
    name = "nfsd"
    summary = "Noise-Free Score Distillation w(t)(δ_D + s(ε_c − ε_u)), δ_D from a negative prompt (Katzir et al. 2023)"

    class Options(registry.Options):
        negative_prompt: registry.Prompt | None = Field(None)
        """The negative prompt y_neg of the domain term for t ≥ 0.2·T; null: the paper's words where the prior's
        vocabulary has them (Stable Diffusion, IF), else "" (the toy world: the unconditional prompt)."""

    def prior_calls_per_step(self) -> int:
        """ε_u, ε_c and ε(y_neg): 3, or 2 where y_neg is "" (ε_u serves), which depends on the prior."""
        return 3

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
        alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        z_t = noised(x.detach(), noise, alpha_bar)
        negative = self.negative_prompt(prior)
        with torch.no_grad():
            if negative == "":  # ε̂(z_t; "") is ε_u itself: no third denoiser call
                eps_u, eps_c = predict_pair(prior, z_t, t, emb_cond, emb_uncond)
                eps_neg = eps_u
            else:
                emb_neg = prior.text_embedding(negative).expand_as(emb_uncond)
                eps_u, eps_c, eps_neg = predict(prior, z_t, t, emb_uncond, emb_cond, emb_neg)
        small = (t < int(SMALL_T * prior.num_train_timesteps)).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        delta_d = torch.where(small, eps_u, eps_u - eps_neg)
        delta_c = eps_c - eps_u
        s = guidance_multiplier(self.cfg.guidance_scale, self.cfg.guidance_convention)
        return self.gradient(x, delta_d + s * delta_c, alpha_bar, eps_u + s * delta_c)

    def negative_prompt(self, prior: Prior) -> str:
        """`sds.negative_prompt`, else the paper's words if the prior can condition on them, else ""."""
        chosen = self.options.negative_prompt
        if chosen is not None:
            return str(chosen)
        vocabulary = prior.component.needs.vocabulary
        return PAPER_NEGATIVE_PROMPT if vocabulary is None or vocabulary.knows(PAPER_NEGATIVE_PROMPT) else ""
