"""A prior whose ε̂ is known exactly: the posterior-mean denoiser of a finite image set.

For data that is a uniform mixture of images {x_k}, the MMSE denoiser is
    E[x0 | z_t] = Σ_k softmax_k(−‖z_t − α_t x_k‖² / 2σ_t²) x_k,   ε̂ = (z_t − α_t E[x0 | z_t]) / σ_t,
and conditioning on a prompt restricts the mixture to that prompt's images. It is the optimal denoiser a
diffusion model trained on that set would converge to, so SDS against it has a known answer: the renders must
go to the set's images. Its image set is the toy world rendered from the trials' camera distribution.

Like the trained prior's captions, a prompt's view suffix (", back view") restricts the mixture to the images of
that view label, and the set can be biased towards the front (`prior.front_bias`, the photographs' bias that
causes the Janus problem): images are weighted by the ratio of the biased azimuth density to the one they were
drawn from, so the mixture is the exact denoiser of the biased world, for every bias, from one image set.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from pydantic import Field
from torch import Tensor

from dreamfusion import registry
from dreamfusion.cache import cache_dir
from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError, shorten
from dreamfusion.nerf.cameras import view_label
from dreamfusion.nerf.render import resize
from dreamfusion.priors.base import Prior
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import NOISE_SCHEDULE

NEG = -1e9  # log-weight that removes an image from a prompt's mixture
#: The image set is drawn with this front bias (half head-on, half uniform), so that both the head-on views a
#: strong bias weights up and the back views a weak one needs are well represented.
BANK_BIAS = 0.5


def linear_alphas_cumprod(num_train_timesteps: int, beta_start: float, beta_end: float) -> Tensor:
    """ᾱ_t of a linear-β DDPM schedule (Ho et al. 2020), computed in float64: [T] float32."""
    betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).float()


def toy_alphas_cumprod() -> Tensor:
    """The toy world's linear-β schedule (`toyworld/assets.py`), which the trained prior was trained with."""
    s = NOISE_SCHEDULE
    return linear_alphas_cumprod(s["num_train_timesteps"], s["beta_start"], s["beta_end"])


@registry.register
class AnalyticPrior(Prior):
    name = "analytic"
    version = "2"  # 2: view suffixes select the images of their view; front bias; spotted and coloured prompts
    summary = (
        "CPU: the exact posterior-mean denoiser of rendered toy-world images (the same prompts), a "
        "known-answer prior for checking SDS itself; not a neural network"
    )
    needs = registry.Needs(vocabulary=world.VOCABULARY)
    scorer = "analytic"

    class Options(registry.Options):
        front_bias: float = Field(0.0, ge=0, lt=1)
        """Share of its world's views that look at the object head-on (|azimuth| ≤ 15°), the rest uniform: the
        photographs' bias towards an object's front (the suspected cause of the Janus problem)."""

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> AnalyticPrior:
        images, captions, cams = world_bank()
        return cls(images, captions, device, cams, cfg.options_for(cls).front_bias)

    @classmethod
    def noise_schedule(cls, cfg: PriorConfig) -> Tensor:
        return toy_alphas_cumprod()

    def __init__(
        self,
        images: Tensor,
        captions: list[str],
        device: torch.device | str = "cpu",
        views: Tensor | None = None,
        front_bias: float = 0.0,
    ) -> None:
        """images [K, 3, r, r] in [0, 1]; captions[k] is the prompt image k belongs to; views [K, 2] the
        (elevation, azimuth) in degrees each was rendered from, drawn with front bias BANK_BIAS (None: unknown,
        and then suffixes and the bias change nothing)."""
        super().__init__()
        self.device, self.dtype = torch.device(device), torch.float32
        self.resolution = images.shape[-1]
        self.bank = (images.to(self.device) * 2 - 1).flatten(1)  # [K, 3·r·r] in model space
        self.captions = captions
        self.known_prompts = sorted(set(captions), key=captions.index)
        self.labels = None if views is None else [view_label(float(e), float(a)) for e, a in views.tolist()]
        self.log_bias = torch.zeros(len(captions), device=self.device)  # [K] log of each image's weight
        if views is not None:  # importance weights: the wanted azimuth law over the one the set was drawn from
            wanted = world.azimuth_density(views[:, 1], front_bias)
            self.log_bias = (wanted / world.azimuth_density(views[:, 1], BANK_BIAS)).log().float().to(self.device)
        self.alphas_cumprod = toy_alphas_cumprod().to(self.device)  # [T]

    def encode_text(self, prompts: list[str]) -> Tensor:
        # → [B, K] log-weights over the image bank; "" is the unconditional mixture of all images
        rows = [self._mask(p) for p in prompts]
        return torch.stack(rows)

    def _mask(self, prompt: str) -> Tensor:
        """[K] log-weights: the bias, and NEG for the images the prompt (and its view suffix, if any) excludes."""
        key = world.strip_view(prompt)
        if key == "":
            return self.log_bias.clone()
        members = torch.tensor([c in members_of(key) for c in self.captions], device=self.device)
        if not members.any():
            raise ConfigError(
                f"prompt: {shorten(prompt)} is not known to the {self.name} prior; it knows "
                f"{len(self.known_prompts)} prompts such as {self.known_prompts[:3]}"
            )
        view = world.view_of(prompt)
        if view is not None and self.labels is not None:
            seen = members & torch.tensor([label == view for label in self.labels], device=self.device)
            members = seen if seen.any() else members  # a view the set never shows (overhead): all views
        return torch.where(members, self.log_bias, NEG)

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return resize(rgb, self.resolution) * 2 - 1

    def from_model_space(self, z: Tensor) -> Tensor:
        return ((z + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        x0 = self.posterior_mean(z_t, t, emb)
        ab = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (z_t - ab.sqrt() * x0) / (1 - ab).sqrt()

    def posterior_mean(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """E[x0 | z_t, prompt]: [B, 3, r, r]."""
        ab = self.alphas_cumprod[t].view(-1, 1)  # [B, 1]
        z = z_t.flatten(1)  # [B, D]
        dist2 = _sq_dist(z, self.bank, ab.sqrt())  # [B, K]
        logits = emb - dist2 / (2 * (1 - ab))
        return (logits.softmax(-1) @ self.bank).view_as(z_t)

    def describe(self) -> str:
        return (
            f"{self.name}: exact posterior-mean denoiser of {len(self.captions)} toy-world renders "
            f"({len(self.known_prompts)} prompts, {self.resolution}px) — not a neural network"
        )


def _sq_dist(z: Tensor, bank: Tensor, scale: Tensor) -> Tensor:
    """‖z_b − s_b·x_k‖² for every b, k without materialising [B, K, D]: [B, K]."""
    return (z * z).sum(-1, keepdim=True) - 2 * scale * (z @ bank.t()) + scale**2 * (bank * bank).sum(-1)[None]


def members_of(prompt: str) -> set[str]:
    """The captions whose images a prompt's mixture holds: its own; the six colours of its shape for "a coloured
    cube" (a colour-unspecified caption is any of them)."""
    caption = world.parse_prompt(prompt)
    if caption is None or not caption.any_colour:
        return {prompt}
    return {f"a {colour} {caption.shape}" for colour in world.COLOURS}


def world_bank(resolution: int = 32, views: int = 32, seed: int = 1234) -> tuple[Tensor, list[str], Tensor]:
    """Renders of every rendered toy-world prompt (colour, spotted, shape-only) from the trials' camera
    distribution with front bias BANK_BIAS, their captions, and the [K, 2] (elevation, azimuth) of each.

    Rendering them takes 15 s or more on one core, and every sweep worker process needs them, so they are cached
    on disk, keyed by everything that determines them: the arguments and the source of the world and renderer.
    """
    path = cache_dir() / f"analytic_bank_{_bank_key(resolution, views, seed)}.pt"
    if path.is_file():
        cached = torch.load(path, weights_only=True)
        return cached["images"], list(cached["captions"]), cached["views"]
    images, captions, cams = _render_bank(resolution, views, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save({"images": images, "captions": captions, "views": cams}, tmp)
    tmp.replace(path)  # atomic: concurrent workers never read a half-written file
    return images, captions, cams


def _bank_key(resolution: int, views: int, seed: int) -> str:
    from dreamfusion.nerf import cameras, render
    from dreamfusion.toyworld import data

    h = hashlib.sha256(f"{resolution}-{views}-{seed}-{BANK_BIAS}-{torch.__version__}".encode())
    for module in (world, data, render, cameras):
        h.update(Path(str(module.__file__)).read_bytes())
    return h.hexdigest()[:16]


def _render_bank(resolution: int, views: int, seed: int) -> tuple[Tensor, list[str], Tensor]:
    from dreamfusion.toyworld.data import render_views, rendered_prompts

    g = torch.Generator().manual_seed(seed)
    images, captions, cams = [], [], []
    for prompt in rendered_prompts():
        x, view_cams = render_views(prompt, views, resolution, g, front_bias=BANK_BIAS)
        images.append(x)
        cams.append(torch.stack([view_cams.elevation, view_cams.azimuth], -1))
        captions += [prompt] * views
    return torch.cat(images), captions, torch.cat(cams)


def load_analytic_prior(device: torch.device | str = "cpu", front_bias: float = 0.0) -> AnalyticPrior:
    images, captions, views = world_bank()
    return AnalyticPrior(images, captions, device, views, front_bias)


@registry.register
class AnalyticScorer(Scorer):
    """Retrieval by the analytic prior's own image set: similarity = −100 × mean squared error to the prompt's
    nearest image. Not CLIP: a scorer whose answer is as exact as the analytic prior's."""

    name = "analytic"
    summary = "nearest-image retrieval in the analytic prior's own image set (−100 × MSE); not CLIP"
    needs = registry.Needs(vocabulary=world.VOCABULARY, prior="analytic")

    @classmethod
    def load(cls, model: str | None, device: torch.device, prior: Prior) -> AnalyticScorer:
        assert isinstance(prior, AnalyticPrior)  # guaranteed by needs.prior, checked by load_scorer
        return cls(prior)

    def __init__(self, prior: AnalyticPrior) -> None:
        self.prior = prior

    def describe(self) -> str:
        return "analytic-nn"

    def similarity(self, images: Tensor, prompts: list[str]) -> Tensor:
        x = (self.prior.to_model_space(images.to(self.prior.device)).flatten(1) + 1) / 2  # [N, D] in [0, 1]
        bank = (self.prior.bank + 1) / 2
        d2 = _sq_dist(x, bank, torch.ones(x.shape[0], 1, device=x.device)) / x.shape[1]  # [N, K]
        cols = []
        for p in prompts:
            allowed = members_of(world.strip_view(p))
            members = torch.tensor([c in allowed for c in self.prior.captions], device=x.device)
            cols.append(d2[:, members].min(-1).values if members.any() else torch.full_like(d2[:, 0], float("inf")))
        return -100 * torch.stack(cols, -1)

    def geometry_query(self, prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
        return world.geometry_query(prompt, prompt_set)

    def default_prompt_set(self, prompt: str) -> list[str]:
        return world.prompt_family(prompt)
