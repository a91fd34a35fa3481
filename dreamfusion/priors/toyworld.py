"""The embedded toy-world prior and its CLIP: small models trained on the procedural world, shipped in the package.

The prior is a pixel-space `UNet2DConditionModel` at 32×32 with a DDPM scheduler, conditioned on the hidden states
of a tiny CLIP text encoder — the shape of DeepFloyd IF stage I, scaled down to a world of 6 shapes × 6 colours.
The scorer is the full tiny CLIP. Both load offline from `dreamfusion/toyworld/weights/` with
`from_pretrained(local path)`; `df-sweep toyworld train --install` retrains them (see the model card there).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.config import ConfigError
from dreamfusion.nerf.render import resize
from dreamfusion.priors.base import Prior, freeze
from dreamfusion.scoring import CLIPScorer, Scorer
from dreamfusion.toyworld import world

#: The shipped weights: unet/, scheduler/, text_encoder/, tokenizer/ (the prior) and clip/ (the scorer).
WEIGHTS = Path(__file__).resolve().parent.parent / "toyworld" / "weights"
#: Token length the UNet was trained with (padded to it, like SD's 77).
MAX_TOKENS = 16


def _check_weights(weights: Path, part: str) -> None:
    if not (weights / part).is_dir():
        raise ConfigError(f"toyworld weights missing: {weights / part} not found; retrain them with "
                          "`df-sweep toyworld train --install` (about 95 CPU-minutes)")


class ToyWorldPrior(Prior):
    def __init__(self, weights: Path, device: torch.device, dtype: torch.dtype) -> None:
        from diffusers import DDPMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        super().__init__()
        _check_weights(weights, "unet")
        self.name = "toyworld"
        self.device, self.dtype = device, dtype
        # low_cpu_mem_usage=False: the model is 7 MB, and the default wants `accelerate` (only in the gpu extra)
        unet = UNet2DConditionModel.from_pretrained(weights, subfolder="unet", torch_dtype=dtype, low_cpu_mem_usage=False)
        self.unet = freeze(unet.to(device))
        self.text_encoder = freeze(CLIPTextModel.from_pretrained(weights, subfolder="text_encoder").to(device))
        self.tokenizer = CLIPTokenizer.from_pretrained(weights, subfolder="tokenizer")
        scheduler = DDPMScheduler.from_pretrained(weights, subfolder="scheduler")
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=device, dtype=torch.float32)  # [T]
        self.image_size = int(self.unet.config.sample_size)

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, 16, D] text-encoder states; "" is the unconditional caption the UNet was trained with."""
        unknown = [p for p in prompts if p.strip() and world.parse_prompt(p) is None]
        if unknown:
            raise ConfigError(f"prompt: {unknown[0]!r} is outside the toy world the toyworld prior knows: "
                              f"'a <{'|'.join(world.COLOURS)}> <{'|'.join(world.SHAPES)}>' or 'a <shape>', "
                              "optionally with ', front view' etc.; for open prompts use Stable Diffusion or "
                              "DeepFloyd IF on a GPU (--set prior.kind=stable-diffusion)")
        tokens = self.tokenizer([p.lower().strip() for p in prompts], padding="max_length", max_length=MAX_TOKENS,
                                truncation=True, return_tensors="pt")
        return self.text_encoder(input_ids=tokens.input_ids.to(self.device)).last_hidden_state.float()

    def to_model_space(self, rgb: Tensor) -> Tensor:
        """[B, 3, H, W] in [0, 1] → [B, 3, 32, 32] in [-1, 1]."""
        return resize(rgb, self.image_size).float() * 2 - 1

    def from_model_space(self, z: Tensor) -> Tensor:
        return ((z.float() + 1) / 2).clamp(0, 1)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        out = self.unet(z_t.to(self.dtype), t.to(self.device), encoder_hidden_states=emb.to(self.dtype)).sample
        return out.float()  # [B, 3, 32, 32]

    def describe(self) -> str:
        s = self.image_size
        params = sum(p.numel() for m in (self.unet, self.text_encoder) for p in m.parameters())
        return (f"{self.name}: small diffusion model of the toy world (6 shapes × 6 colours), trained in the package; "
                f"pixel space 3×{s}×{s}, tiny-CLIP text {MAX_TOKENS}×{self.text_encoder.config.hidden_size}, "
                f"{params / 1e6:.1f}M params, T={self.num_train_timesteps}, on {self.device}")


class ToyWorldScorer(CLIPScorer):
    """The toy-world CLIP: colour prompts are retrieved among the world's 36 colour prompts, textureless renders
    among the 6 shape-only prompts ("a red cube" → "a cube")."""

    def __init__(self, weights: Path, device: str | torch.device = "cpu") -> None:
        _check_weights(weights, "clip")
        super().__init__(str(weights / "clip"), device)
        self.name = "toyworld-clip"

    def geometry_query(self, prompt: str, prompt_set: list[str]) -> tuple[str, list[str]]:
        shape = world.shape_caption(prompt)
        return (shape, world.shape_prompts()) if shape else (prompt, prompt_set)

    def default_prompt_set(self, prompt: str) -> list[str]:
        caption = world.parse_prompt(prompt)
        return world.shape_prompts() if caption is not None and caption.colour is None else world.colour_prompts()


def load_toyworld_prior(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        weights: Path = WEIGHTS) -> ToyWorldPrior:
    return ToyWorldPrior(Path(weights), torch.device(device), dtype)


def load_toyworld_scorer(device: torch.device | str = "cpu", weights: Path = WEIGHTS) -> Scorer:
    return ToyWorldScorer(Path(weights), device)
