"""Classifier Score Distillation (CSD; Yu et al. 2023, "Text-to-3D with Classifier Score Distillation"):

    ∇θ L_CSD = E_{t,ε}[ w(t) · s · (ε̂_φ(z_t; y, t) − ε̂_φ(z_t; ∅, t)) · ∂x/∂θ ],   z_t = α_t·x + σ_t·ε

SDS with classifier-free guidance is w(t)[(ε_u − ε) + s(ε_c − ε_u)]; at the guidance scales text-to-3D uses, the
second term (the implicit classifier's score) does the work, and CSD keeps it alone: no ε_u − ε term, so neither
the injected noise nor `sds.baseline` enters. s multiplies the classifier score as in the guided prediction
ε_u + s(ε_c − ε_u): s = `guidance_scale` in the diffusers convention, ω + 1 in the paper convention.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.priors.base import Prior
from dreamfusion.sds.guidance import guidance_multiplier, predict_pair
from dreamfusion.sds.loss import Loss, LossContext, SDSOutput, noised


@registry.register
class CSD(Loss):
    name = "csd"
    summary = "Classifier Score Distillation w(t)·s(ε_c − ε_u), the classifier score alone (Yu et al. 2023)"

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
        with torch.no_grad():
            eps_u, eps_c = predict_pair(prior, z_t, t, emb_cond, emb_uncond)
        s = guidance_multiplier(self.cfg.guidance_scale, self.cfg.guidance_convention)
        classifier = s * (eps_c - eps_u)  # [B, C, h, w]
        return self.gradient(x, classifier, alpha_bar, eps_u + classifier)
