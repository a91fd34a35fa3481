"""The embedded toy-world prior: a small model trained on the procedural world, shipped in the package.

The prior is a pixel-space `UNet2DConditionModel` at 32×32 with a DDPM scheduler, conditioned on the hidden states
of a tiny CLIP text encoder — the shape of DeepFloyd IF stage I, scaled down to a world of 6 shapes × 6 colours.
It loads offline from `dreamfusion/toyworld/weights/`, the folders diffusers and transformers save, into plain-torch
ports of those models (`unet.py`, `clip.py`, `tokenizer.py`) that compute the same numbers bit for bit without
importing either library: seconds off every worker's start. `df-sweep toyworld train --install` retrains it with
diffusers and transformers (see the model card there).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import PriorConfig, SpeedConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.field import parameter_count
from dreamfusion.nerf.render import resize
from dreamfusion.priors.base import Prior, freeze
from dreamfusion.priors.noise import CONFIG_PATH, alphas_cumprod, read_config
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import MAX_TOKENS, SHIPPED_SHA256, WEIGHTS, check_weights
from dreamfusion.toyworld.clip import load_text_encoder
from dreamfusion.toyworld.tokenizer import ToyTokenizer
from dreamfusion.toyworld.unet import load_unet


@registry.register
class ToyWorldPrior(Prior):
    name = "toyworld"
    summary = (
        "CPU default: a small (1.7M-param UNet) text-to-image diffusion model of a toy world, trained in "
        "the package, with its own small CLIP as scorer (model card: dreamfusion/toyworld/MODEL_CARD.md)"
    )
    needs = registry.Needs(vocabulary=world.VOCABULARY)
    scorer = "toyworld"
    network_attribute = "unet"

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> ToyWorldPrior:
        return cls(WEIGHTS, device, dtype)

    @classmethod
    def check(cls, cfg: PriorConfig) -> None:
        check_weights(WEIGHTS, "unet")

    @classmethod
    def noise_schedule(cls, cfg: PriorConfig) -> Tensor:
        """From the shipped weights' scheduler config, without loading the UNet."""
        check_weights(WEIGHTS, "scheduler")
        return alphas_cumprod(read_config(WEIGHTS / CONFIG_PATH))

    def __init__(self, weights: Path, device: torch.device, dtype: torch.dtype) -> None:
        super().__init__()
        check_weights(weights, "unet")
        self.device, self.dtype = device, dtype
        self.unet = freeze(load_unet(weights / "unet", dtype), device)
        self.text_encoder = freeze(load_text_encoder(weights / "text_encoder"), device)
        self.tokenizer = ToyTokenizer.from_folder(weights / "tokenizer")
        self.alphas_cumprod = alphas_cumprod(read_config(weights / CONFIG_PATH)).to(device)  # [T]
        self.image_size = int(self.unet.config["sample_size"])
        self.shared_trunk = False

    def use_speed(self, speed: SpeedConfig) -> None:
        self.shared_trunk = speed.shared_trunk

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, 16, D] text-encoder states; "" is the unconditional caption the UNet was trained with."""
        unknown = [p for p in prompts if p.strip() and not world.VOCABULARY.knows(p)]
        if unknown:
            raise ConfigError(
                f"prompt: {unknown[0]!r} is outside the toy world the toyworld prior knows: "
                f"{world.VOCABULARY.describe()}; for open prompts use Stable Diffusion or "
                "DeepFloyd IF on a GPU (--set prior.kind=stable-diffusion)"
            )
        ids, _ = self.tokenizer([p.lower().strip() for p in prompts])  # [B, 16], padded to the length trained with
        return self.text_encoder(ids.to(self.device)).float()

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1] → [B, 3, 32, 32] in [-1, 1]."""
        return resize(rgb, self.image_size).float() * 2 - 1

    def from_model_space(self, z: Tensor) -> Tensor:
        return ((z.float() + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        return self.unet(z_t.to(self.dtype), t.to(self.device), emb.to(self.dtype)).float()  # [B, 3, 32, 32]

    def predict_noise_repeated(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """With `speed.shared_trunk`, the UNet takes the copies' one z_t and widens the batch where the text enters."""
        if not self.shared_trunk:
            return super().predict_noise_repeated(z_t, t, emb)
        return self.predict_noise(z_t, t, emb)

    def describe(self) -> str:
        s = self.image_size
        params = parameter_count(self.unet, self.text_encoder)
        return (
            f"{self.name}: small diffusion model of the toy world (6 shapes × 6 colours), trained in the package; "
            f"pixel space 3×{s}×{s}, tiny-CLIP text {MAX_TOKENS}×{self.text_encoder.hidden_size}, "
            f"{params / 1e6:.1f}M params, T={self.num_train_timesteps}, on {self.device}"
        )


def load_toyworld_prior(
    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, weights: Path = WEIGHTS
) -> ToyWorldPrior:
    return ToyWorldPrior(Path(weights), torch.device(device), dtype)


def record_sha256(weights: Path = WEIGHTS) -> str:
    """Load the prior from `weights` as a trial does (CPU, float32) and write its fingerprint beside them, where
    `assets.shipped_sha256` reads it."""
    sha = load_toyworld_prior(weights=weights).fingerprint()
    (Path(weights) / SHIPPED_SHA256.name).write_text(sha + "\n")
    return sha
