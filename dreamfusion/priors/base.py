"""The one interface every frozen text-to-image prior implements, so SDS code never knows which model it talks to.

A prior owns: text → embeddings (cached per prompt, view suffix included), image ↔ model space (pixels or latents),
the noise schedule ᾱ_t, and ε̂(z_t, t, emb). Classifier-free guidance is *not* here: it is part of SDS. A prior is
a registered component: `prior.kind` names it, and its class says what can be checked before it is loaded.
"""

from __future__ import annotations

import abc
import copy
import hashlib
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from dreamfusion import registry
from dreamfusion.config.schema import PriorConfig, SpeedConfig
from dreamfusion.errors import ConfigError

#: What a load holds: the whole prior, or one side of a served one (`prior.placement: shared`): the `denoiser`
#: (text → embeddings, (z_t, t, emb) → ε̂) a prior service holds once per GPU, or the `codec` (image ↔ model
#: space, ᾱ_t) each trial keeps, because SDS's gradient passes through it (SD's VAE encoder).
Part = Literal["all", "denoiser", "codec"]


class Prior(registry.Component, abc.ABC):
    kind = "prior"
    #: The scorer `scoring.model: auto` pairs this prior with.
    scorer: ClassVar[str] = "clip"
    device: torch.device
    #: dtype the denoiser runs in (float16 on CUDA for the diffusers priors); SDS always sees float32.
    dtype: torch.dtype
    #: [T] float32 on `device`: ᾱ_t of the prior's DDPM training schedule.
    alphas_cumprod: Tensor
    #: The attribute that holds the denoiser network, for a loss that trains an adapter of it (VSD); None: the
    #: prior has no network of its own here (a served prior's is in its service; the analytic prior has none).
    network_attribute: ClassVar[str | None] = None

    def __init__(self) -> None:
        self._embeddings: dict[str, Tensor] = {}

    @classmethod
    @abc.abstractmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
        """The prior `cfg` describes, on `device`; a checkpoint that cannot be loaded is a one-line ConfigError."""

    @classmethod
    def load_part(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype, part: Part) -> Prior:
        """One part of the prior. By default every part is the whole prior: correct on either side of a served
        prior, only without the memory it could save; an adapter that can split overrides this."""
        return cls.load(cfg, device, dtype)

    @classmethod
    def check(cls, cfg: PriorConfig) -> None:
        """What can be checked without loading anything (are the weights there?); raises ConfigError."""

    @classmethod
    def noise_schedule(cls, cfg: PriorConfig) -> Tensor:
        """[T] float32 ᾱ_t on the CPU of the prior `cfg` describes: what `alphas_cumprod` will be once it is loaded.
        Priors that know their schedule without their weights override this (`df-sweep schedules` shows a
        schedule before anything is downloaded); this default loads the prior."""
        return cls.load(cfg, torch.device("cpu"), torch.float32).alphas_cumprod.cpu()

    @classmethod
    def claims(cls, model: str) -> int:
        """How specifically this prior loads checkpoint `model` (for the `prior: MODEL` shorthand): 0 not at all,
        1 as one of many it could load, 2 as its own kind of checkpoint."""
        return 0

    def use_speed(self, speed: SpeedConfig) -> None:
        """Compute ε̂ as the trial's `speed.*` switches say, from now on (a prior loaded once per worker serves
        trials with different configs: each trial's step sets its own). Only priors that a switch concerns override
        this (the toy prior: `speed.shared_trunk`)."""

    @property
    def component(self) -> type[Prior]:
        """The registered class that computes this prior's ε̂ (a served prior's is the class the service loaded)."""
        return type(self)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.alphas_cumprod.shape[0])

    def text_embedding(self, prompt: str) -> Tensor:
        """[1, ...] embedding of one prompt; cached, because a trial asks for the same few prompts every step."""
        if prompt not in self._embeddings:
            with torch.no_grad():
                self._embeddings[prompt] = self.encode_text([prompt]).detach()
        return self._embeddings[prompt]

    def text_embeddings(self, prompts: list[str]) -> Tensor:
        """[B, ...] embeddings of a batch of prompts, from the cache."""
        return torch.cat([self.text_embedding(p) for p in prompts], dim=0)

    @abc.abstractmethod
    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, ...] text conditioning; the empty prompt is the unconditional embedding."""

    @abc.abstractmethod
    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1] → [B, C, h, w] the denoiser's space; differentiable (VAE encoder included). A
        prior whose encoding is random (a VAE posterior sample) draws from `generator`; the others ignore it."""

    @abc.abstractmethod
    def from_model_space(self, z: Tensor) -> Tensor:
        """[B, C, h, w] → [B, 3, h', w'] in [0, 1], for looking at what the prior sees."""

    @abc.abstractmethod
    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """ε̂(z_t; t, emb): z_t [B, C, h, w] float32, t [B] long, emb [B, ...] → [B, C, h, w] float32.

        Autograd flows through this call only when the caller enables it (the Jacobian ablation); the
        denoiser's own parameters are frozen, so they never receive a gradient either way.
        """

    def predict_noise_repeated(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """ε̂ of k copies of (z_t [B, ...], t [B]), each under its own text: emb [k·B, ...] → [k·B, C, h, w], as
        `predict_noise` of the copies laid out one after another (classifier-free guidance's batch). A prior
        whose denoiser can share the text-free part of the copies overrides this."""
        k = emb.shape[0] // z_t.shape[0]
        return self.predict_noise(torch.cat([z_t] * k), torch.cat([t] * k), emb)

    def network(self) -> nn.Module:
        """The network that computes ε̂ (frozen), for a loss that adapts a copy of it; a ConfigError where there is
        none here."""
        if self.network_attribute is None:
            raise ConfigError(
                f"prior: {self.name} has no denoiser network in the trial's process to adapt (a shared prior's runs in "
                "its service, the analytic prior has none); expected prior.placement: local and a neural prior"
            )
        module: nn.Module = getattr(self, self.network_attribute)
        return module

    def with_network(self, module: nn.Module) -> Prior:
        """This prior computing ε̂ with `module` in place of its own network, everything else (text, model space,
        ᾱ_t, the v → ε conversion) shared: how VSD's adapter predicts. The prior itself is left unchanged."""
        self.network()  # refuses a prior without one
        adapted = copy.copy(self)
        setattr(adapted, str(self.network_attribute), module)
        return adapted

    def describe(self) -> str:
        """One line for `df-sweep run` and the run's `df.prior` tag: which model ran, and what it is."""
        return self.name

    def fingerprint(self) -> str:
        """sha256 of the weights as loaded (every tensor and module the prior holds, by attribute name): the same
        string for the same weights whatever their checkpoint is called, and whether the prior is loaded whole or
        served in parts (`weight_digests` of both sides together), computed once per prior."""
        return combined_fingerprint(self.weight_digests())

    def weight_digests(self) -> dict[str, str]:
        """sha256 per attribute that holds weights (a module or a tensor), computed once (seconds for Stable
        Diffusion, once per worker): the parts of a served prior report theirs, which combine into the whole's."""
        cached: dict[str, str] | None = getattr(self, "_weight_digests", None)
        if cached is None:
            cached = {}
            for name, value in sorted(vars(self).items()):
                tensors = value.state_dict().items() if isinstance(value, torch.nn.Module) else [("", value)]
                digest, found = hashlib.sha256(), False
                for key, tensor in tensors:
                    if isinstance(tensor, Tensor):
                        found = True
                        digest.update(f"{name}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
                        digest.update(
                            tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes()
                        )
                if found:
                    cached[name] = digest.hexdigest()
            self._weight_digests = cached
        return cached


def combined_fingerprint(digests: dict[str, str]) -> str:
    """One sha256 of per-attribute weight digests, in name order."""
    return hashlib.sha256("".join(f"{name}={digests[name]}\n" for name in sorted(digests)).encode()).hexdigest()


def freeze(module: Any, device: torch.device) -> Any:
    """On `device`, in eval mode, and no parameter requires grad: a prior is never trained by SDS."""
    module = module.to(device)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    dtype: torch.dtype = getattr(torch, name)
    return dtype


def load_prior(cfg: PriorConfig, device: str = "auto", part: Part = "all") -> Prior:
    """The one place a `PriorConfig` becomes a `Prior` (or one part of it): the registered class of `prior.kind`
    loads it."""
    dev = resolve_device(device)
    cls: type[Prior] = registry.find("prior", cfg.kind)
    cls.check(cfg)
    dtype = resolve_dtype(cfg.dtype, dev)
    return cls.load(cfg, dev, dtype) if part == "all" else cls.load_part(cfg, dev, dtype, part)
