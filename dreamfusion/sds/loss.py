"""What every score-distillation loss shares: its interface, its output, the forward noising and the surrogate
that injects a chosen gradient at the render.

A loss turns a render x (in the prior's model space) into a gradient at x. It never trains the prior: the denoiser
runs without autograd (unless a loss is the Jacobian ablation), and the gradient reaches the NeRF through x alone.
The losses differ only in the residual r they weight: SDS r = ε̂ − ε (`sds.py`), CSD r = s(ε_c − ε_u) (`csd.py`),
NFSD r = δ_D + s(ε_c − ε_u) (`nfsd.py`), ISM r = ε̂(x_t) − ε_∅(x_s) (`ism.py`), SDI r = ε̂(x_t) − κ (`sdi.py`), the
last two with x_t from a DDIM inversion of x (`inversion.py`); `gradient` turns any residual into w(t)·r, clipped,
made finite and injected.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import SDSConfig
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.priors.base import Prior
from dreamfusion.sds.weighting import Weighting, make_weighting


@dataclass
class SDSOutput:
    loss: Tensor  # [] surrogate loss; its gradient w.r.t. x is `grad / B`
    grad: Tensor  # [B, C, h, w] the gradient injected at x, after clipping
    eps_hat: Tensor  # [B, C, h, w] the guided prediction ε_u + s(ε_c − ε_u)
    nonfinite: Tensor  # [] fraction of the residual's elements that were non-finite (and contribute no gradient)


@dataclass
class LossContext:
    """What the step knows besides the render, for a loss that learns during the trial (VSD's adapter sees the
    camera and trains on the renders); the other losses ignore it."""

    cameras: Cameras  # the step's B views
    emb_prompt: Tensor  # [B, ...] the prompt without its view suffix
    generator: torch.Generator  # the trial's checkpointed generator: every draw a loss makes comes from it


class Loss(registry.Component, abc.ABC):
    kind = "loss"
    #: The w(t) its authors use: `sds.weighting` where the config does not name one (`config/sds.py`).
    default_weighting: ClassVar[str] = "sds"

    def __init__(self, cfg: SDSConfig) -> None:
        self.cfg = cfg
        self.options = cfg.options_for(type(self))
        self.weight: Weighting = make_weighting(cfg)

    def prior_calls_per_step(self) -> int:
        """Images through the denoiser per view per step, at most: a classifier-free pair counts 2, an inversion
        step 1 or 2. What a step's prior time scales with, and what `--dry-run`'s cost estimate reads; a method, not
        a constant, because for some losses it depends on their options (ISM's and SDI's inversion steps)."""
        return 2

    @abc.abstractmethod
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
        """x [B, C, h, w] in model space (requires grad), t [B] long, text embeddings [B, ...], noise ε like x;
        `context` what the step knows besides (a loss that needs it, VSD, refuses to run without)."""

    def start(self, prior: Prior, seed: int) -> None:
        """Build what the loss learns during a trial against `prior`, before the first step and before a checkpoint
        is restored (VSD's adapter, from `seed`); the other losses learn nothing."""

    def state_dict(self) -> dict[str, Any]:
        """What the loss has learnt so far, checkpointed with the trial; empty for a loss that learns nothing."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()`'s output."""

    def gradient(self, x: Tensor, residual: Tensor, alpha_bar: Tensor, eps_hat: Tensor) -> SDSOutput:
        """w(t)·residual injected at x: clamped to ±`grad_clip`, and every element whose residual is non-finite (a
        stray NaN or inf of the denoiser, in fp16 say) zeroed and counted. Zeroing the gradient, not ε̂ alone, as
        the references' nan_to_num does: a zeroed ε̂ would still inject w(t)·(0 − ε), pure noise.

        residual, eps_hat [B, C, h, w]; alpha_bar [B, 1, 1, 1].
        """
        finite = torch.isfinite(residual)
        grad = self.weight(alpha_bar) * torch.where(finite, residual, torch.zeros_like(residual))
        if self.cfg.grad_clip is not None:
            grad = grad.clamp(-self.cfg.grad_clip, self.cfg.grad_clip)
        return SDSOutput(inject(x, grad), grad, eps_hat, 1 - finite.float().mean())


def noised(x: Tensor, noise: Tensor, alpha_bar: Tensor) -> Tensor:
    """z_t = α_t·x + σ_t·ε with α_t = sqrt(ᾱ_t), σ_t = sqrt(1 − ᾱ_t); alpha_bar [B, 1, 1, 1]."""
    return alpha_bar.sqrt() * x + (1 - alpha_bar).sqrt() * noise


def inject(x: Tensor, grad: Tensor) -> Tensor:
    """0.5·‖x − sg(x − grad)‖² / B: a loss whose gradient with respect to x is exactly grad / B."""
    target = (x - grad).detach()
    return 0.5 * ((x - target) ** 2).sum() / x.shape[0]


def make_loss(cfg: SDSConfig) -> Loss:
    return registry.find("loss", cfg.loss)(cfg)
