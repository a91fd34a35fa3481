"""DeepFloyd IF stage I as an SDS prior: a pixel-space denoiser at 64×64, conditioned by T5 text.

Pixel space means no VAE: the SDS gradient lands on the resized render directly, as with the Imagen 64×64 base
model of the original DreamFusion paper, whose closest open counterpart IF stage I is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import PriorConfig
from dreamfusion.nerf.field import parameter_count
from dreamfusion.priors.base import freeze
from dreamfusion.priors.hf import (
    DiffusersPrior,
    dtype_name,
    is_model_reference,
    transformers_dtype,
)

DEFAULT_MODEL = "DeepFloyd/IF-I-XL-v1.0"
#: IF's text encoder was trained on 77 tokens although T5 takes longer inputs (as in diffusers' IFPipeline).
MAX_TOKENS = 77


@registry.register
class DeepFloydIFPrior(DiffusersPrior):
    name = "deepfloyd-if"
    summary = "DeepFloyd IF stage I through diffusers: a pixel-space UNet at 64×64, T5 text (default IF-I-XL)"
    needs = registry.Needs(gpu=True)
    default_model = DEFAULT_MODEL

    @classmethod
    def claims(cls, model: str) -> int:
        """DeepFloyd's stage-I checkpoints are named IF-I-*."""
        return 2 if is_model_reference(model) and "if-i" in model.lower() else 0

    def __init__(self, model: str, device: torch.device, dtype: torch.dtype, cfg: PriorConfig) -> None:
        from diffusers import UNet2DConditionModel
        from transformers import T5EncoderModel, T5Tokenizer

        super().__init__()
        self.model = model
        self.device = device
        self.dtype = dtype
        self.load_scheduler(model)
        # Weights before the tokenizer: a wrong path or hub id fails here, whereas a transformers 5 tokenizer with
        # no files silently falls back to an empty vocabulary.
        self.unet: Any = freeze(
            UNet2DConditionModel.from_pretrained(model, subfolder="unet", torch_dtype=dtype),
            device,
        )
        self.text_encoder: Any = freeze(
            T5EncoderModel.from_pretrained(model, subfolder="text_encoder", **transformers_dtype(dtype)),
            device,
        )
        self.tokenizer = T5Tokenizer.from_pretrained(model, subfolder="tokenizer")
        self.image_size = self.unet.config.sample_size

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, 77, D]: lower-cased and masked like IFPipeline (clean_caption off), so "" is IF's negative prompt."""
        tokens = self.tokenizer(
            [p.lower().strip() for p in prompts],
            padding="max_length",
            max_length=MAX_TOKENS,
            truncation=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        out = self.text_encoder(tokens.input_ids.to(self.device), attention_mask=tokens.attention_mask.to(self.device))
        return out.last_hidden_state.float()  # [B, 77, 4096]

    def to_model_space(self, rgb: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[B, 3, H, W] in [0, 1] → [B, 3, 64, 64] in [-1, 1], the range IF was trained on."""
        rgb = F.interpolate(rgb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (rgb * 2 - 1).float()

    def from_model_space(self, z: Tensor) -> Tensor:
        return ((z.float() + 1) / 2).clamp(0, 1)  # [B, 3, 64, 64]

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """The UNet predicts ε (or v) and the variance interpolation [B, 6, h, w]; SDS wants only ε, the first half."""
        out = self.unet(z_t.to(self.dtype), t.to(self.device), encoder_hidden_states=emb.to(self.dtype)).sample
        pred, _ = out.split(z_t.shape[1], dim=1)
        return self.to_epsilon(pred, z_t, t)  # [B, 3, 64, 64]

    def describe(self) -> str:
        s = self.image_size
        params = parameter_count(self.unet, self.text_encoder)
        return (
            f"{self.name}:{self.model}: pixel space 3×{s}×{s}, "
            f"T5 text {MAX_TOKENS}×{self.text_encoder.config.d_model}, "
            f"{params / 1e6:.1f}M params, T={self.num_train_timesteps}, {self.prediction_type}, "
            f"{dtype_name(self.dtype)} on {self.device}"
        )
