"""A trial's view of a prior whose text encoder and denoiser run elsewhere (`prior.placement: shared`).

The trial keeps the codec part of the prior (image ↔ model space, ᾱ_t: SD's VAE, through whose encoder SDS's
gradient passes) and asks a `Denoiser` for text embeddings and ε̂; SDS and the trial loop see the same `Prior`
interface either way. Which process answers, and how requests travel, is the transport's business: a Ray actor
per node or GPU in a sweep (`dreamfusion/serving/service.py`), pipes in the packing benchmark.
"""

from __future__ import annotations

import abc
from typing import Any, Protocol

import torch
from torch import Tensor

from dreamfusion.config.schema import PriorConfig, SpeedConfig
from dreamfusion.priors.base import Prior


class Denoiser(Protocol):
    """The denoiser part of a prior, wherever it runs; tensors come back on any device."""

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, L, D] embeddings; "" is the unconditional one."""
        ...

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """ε̂ [B, C, h, w] float32, computed without autograd."""
        ...

    def describe(self) -> str:
        """The serving prior's own description, and which process serves it."""
        ...

    def weight_digests(self) -> dict[str, str]:
        """The serving prior's `Prior.weight_digests`."""
        ...


class RemoteDenoiser(abc.ABC):
    """A `Denoiser` in another process: each method is one call through the transport's `_call`, with CPU tensors
    (what crosses a process boundary cheaply), waited for."""

    @abc.abstractmethod
    def _call(self, method: str, *args: Any) -> Any:
        """The result of `method(*args)` on the serving side; the transport's failures as its own error."""

    def encode_text(self, prompts: list[str]) -> Tensor:
        result: Tensor = self._call("encode_text", prompts)
        return result

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        result: Tensor = self._call("predict_noise", z_t.detach().cpu(), t.cpu(), emb.detach().cpu())
        return result

    def describe(self) -> str:
        description: str = self._call("describe")
        return description

    def weight_digests(self) -> dict[str, str]:
        digests: dict[str, str] = self._call("weight_digests")
        return digests


class ServedPrior(Prior):
    name = "served"  # never registered: `component` names the class that computes ε̂

    def __init__(self, codec: Prior, denoiser: Denoiser) -> None:
        super().__init__()
        self.codec, self.denoiser = codec, denoiser
        self.device, self.dtype, self.alphas_cumprod = codec.device, codec.dtype, codec.alphas_cumprod

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
        raise TypeError("a served prior is made of a loaded codec part and a denoiser, not loaded from a config")

    @property
    def component(self) -> type[Prior]:
        return self.codec.component

    def use_speed(self, speed: SpeedConfig) -> None:
        """The codec part's switches; the denoiser's service was chosen with the same (`service.connect`)."""
        self.codec.use_speed(speed)

    def encode_text(self, prompts: list[str]) -> Tensor:
        return self.denoiser.encode_text(prompts).to(self.device)

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.codec.to_model_space(rgb, generator)

    def from_model_space(self, z: Tensor) -> Tensor:
        return self.codec.from_model_space(z)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """ε̂ from the denoiser; the gradient cannot follow it into another process (config validation keeps
        `sds.jacobian` local), so asking for one is an error rather than a silently missing gradient."""
        if torch.is_grad_enabled() and (z_t.requires_grad or emb.requires_grad):
            raise RuntimeError("a served prior computes ε̂ without autograd; sds.jacobian needs prior.placement: local")
        return self.denoiser.predict_noise(z_t, t, emb).to(self.device)

    def describe(self) -> str:
        return self.denoiser.describe()

    def weight_digests(self) -> dict[str, str]:
        """Both parts' weights: the same fingerprint as the whole prior loaded locally."""
        return {**self.codec.weight_digests(), **self.denoiser.weight_digests()}
