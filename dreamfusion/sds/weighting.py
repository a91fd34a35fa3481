"""The weighting w(t) of the score-distillation gradient, as a function of ᾱ_t: one registered class each."""

from __future__ import annotations

import abc

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.sds import SDSConfig


class Weighting(registry.Component, abc.ABC):
    kind = "weighting"

    def __init__(self, options: registry.Options) -> None:
        self.options: registry.Options = options

    @abc.abstractmethod
    def __call__(self, alpha_bar: Tensor) -> Tensor:
        """w(t) from ᾱ_t, elementwise (any shape)."""


@registry.register
class DreamFusion(Weighting):
    name = "sds"
    summary = "w = σ_t² = 1 − ᾱ_t (DreamFusion; threestudio's `sds`)"

    def __call__(self, alpha_bar: Tensor) -> Tensor:
        return 1 - alpha_bar


@registry.register
class Uniform(Weighting):
    name = "uniform"
    summary = "w = 1"

    def __call__(self, alpha_bar: Tensor) -> Tensor:
        return torch.ones_like(alpha_bar)


@registry.register
class Fantasia3D(Weighting):
    name = "fantasia3d"
    summary = "w = sqrt(ᾱ_t)·(1 − ᾱ_t) (Fantasia3D)"

    def __call__(self, alpha_bar: Tensor) -> Tensor:
        return alpha_bar.sqrt() * (1 - alpha_bar)


@registry.register
class X0(Weighting):
    name = "x0"
    summary = "w = sqrt((1 − ᾱ_t)/ᾱ_t) = σ_t/α_t, the gradient in x̂₀ terms (LucidDreamer's ISM; SDI)"

    def __call__(self, alpha_bar: Tensor) -> Tensor:
        return ((1 - alpha_bar) / alpha_bar).sqrt()


def make_weighting(cfg: SDSConfig) -> Weighting:
    chosen = registry.find("weighting", cfg.weighting)
    return chosen(cfg.options_for(chosen))
