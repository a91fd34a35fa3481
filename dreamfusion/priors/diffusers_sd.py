"""Stable Diffusion as an SDS prior: a latent-space denoiser behind a VAE, conditioned by CLIP text.

Only the four modules SDS needs are loaded (no safety checker, no feature extractor), so a GPU that fits the UNet
fits the prior. The VAE encoder stays on the autograd path: SDS's gradient reaches the rendered pixels through it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import PriorConfig
from dreamfusion.nerf.field import parameter_count
from dreamfusion.priors.base import Part
from dreamfusion.priors.hf import (
    DiffusersPrior,
    checkpoint_dir,
    dtype_name,
    is_model_reference,
    load_module,
)

DEFAULT_MODEL = "stabilityai/stable-diffusion-2-1-base"


@registry.register
class StableDiffusionPrior(DiffusersPrior):
    name = "stable-diffusion"
    summary = (
        "Stable Diffusion through diffusers: a latent UNet behind a VAE, CLIP text (default SD 2.1 base; "
        "random:sd-2.1-base: its architecture with random weights, no download)"
    )
    needs = registry.Needs(gpu=True)
    default_model = DEFAULT_MODEL
    architectures = ("sd-2.1-base",)

    class Options(registry.Options):
        latents: Literal["mean", "sample"] = "mean"
        """A render's latent is its VAE posterior's mean (no VAE noise in the SDS gradient) or a sample from it,
        from the trial's generator (threestudio's `posterior.sample()`)."""

    @classmethod
    def claims(cls, model: str) -> int:
        """Any diffusers checkpoint with a VAE could be a Stable Diffusion one: the generic claim."""
        return max(super().claims(model), 1 if is_model_reference(model) else 0)

    def __init__(
        self, model: str, device: torch.device, dtype: torch.dtype, cfg: PriorConfig, part: Part = "all"
    ) -> None:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        super().__init__()
        self.model, self.device, self.dtype, self.part = model, device, dtype, part
        self.latents = cfg.options_for(type(self)).latents
        self.load_scheduler(model)
        denoiser, codec, source = part != "codec", part != "denoiser", checkpoint_dir(model)
        # Weights before the tokenizer: a wrong path or hub id fails here, whereas a transformers 5 tokenizer with
        # no files silently falls back to an empty vocabulary.
        self.unet: Any = load_module(UNet2DConditionModel, model, "unet", device, dtype) if denoiser else None
        self.vae: Any = load_module(AutoencoderKL, model, "vae", device, dtype) if codec else None
        self.text_encoder: Any = load_module(CLIPTextModel, model, "text_encoder", device, dtype) if denoiser else None
        self.tokenizer: Any = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer") if denoiser else None
        self.unet_config = UNet2DConditionModel.load_config(source, subfolder="unet")
        self.vae_config = AutoencoderKL.load_config(source, subfolder="vae")
        self.vae_scale_factor = 2 ** (len(self.vae_config["block_out_channels"]) - 1)
        self.image_size = self.unet_config["sample_size"] * self.vae_scale_factor

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, L, D]: SD conditions on every token's last hidden state, padded to the full context as in training."""
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        return self.text_encoder(tokens.input_ids.to(self.device)).last_hidden_state.float()  # [B, 77, 1024]

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1] → [B, 4, h, w]: the VAE posterior's mean (`prior.latents: mean`, which keeps SDS
        free of the VAE's sampling noise) or a sample from it drawn from `generator` (`sample`, as threestudio)."""
        rgb = F.interpolate(rgb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        x = rgb * 2 - 1  # [B, 3, 512, 512] in [-1, 1]
        posterior = self.vae.encode(x.to(self.dtype)).latent_dist
        latents = posterior.sample(generator) if self.latents == "sample" else posterior.mean  # [B, 4, 64, 64]
        return (latents * self.vae_config["scaling_factor"]).float()

    def from_model_space(self, z: Tensor) -> Tensor:
        """[B, 4, h, w] latents → [B, 3, H, W] in [0, 1] through the VAE decoder."""
        x = self.vae.decode((z / self.vae_config["scaling_factor"]).to(self.dtype)).sample  # [B, 3, 512, 512]
        return ((x.float() + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        out = self.unet(z_t.to(self.dtype), t.to(self.device), encoder_hidden_states=emb.to(self.dtype)).sample
        return self.to_epsilon(out, z_t, t)  # [B, 4, 64, 64]

    def describe(self) -> str:
        c, s = self.unet_config["in_channels"], self.unet_config["sample_size"]
        tokens = self.tokenizer.model_max_length if self.tokenizer else "?"
        params = parameter_count(*(m for m in (self.unet, self.vae, self.text_encoder) if m is not None))
        return (
            f"{self.name}:{self.model}: latent {c}×{s}×{s} of {self.image_size}px RGB (VAE /{self.vae_scale_factor}), "
            f"CLIP text {tokens}×{self.unet_config['cross_attention_dim']}, {params / 1e6:.1f}M params"
            f"{'' if self.part == 'all' else f' of the {self.part}'}, T={self.num_train_timesteps}, "
            f"{self.prediction_type}, "
            f"{dtype_name(self.dtype)} on {self.device}"
        )
