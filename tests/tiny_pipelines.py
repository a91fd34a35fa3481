"""Tiny random-weight diffusers pipelines, built from configs and saved to disk.

The adapters are tested by loading these folders through the very `from_pretrained(path, subfolder=...)` calls
that load the real hub models, so the tests cover the loading code without downloading a single weight.
"""

from __future__ import annotations

import json
import os
import shutil
import string
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    IFPipeline,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from dreamfusion.priors.noise import shipped_config

#: Words the tiny tokenizers know whole; anything else falls back to letters (CLIP) or <unk> (T5).
WORDS = ["a", "red", "cube", "blue", "ball", "front", "side", "back", "overhead", "view", ","]
#: Token sequence length of the tiny CLIP tokenizer (SD uses 77; short keeps the tests fast).
CLIP_MAX_LENGTH = 16
#: Width of both tiny text encoders, and so the UNets' cross-attention width.
TEXT_DIM = 32
#: The published checkpoints whose scheduler configs the tiny pipelines reuse (shipped in the package).
SD_MODEL, IF_MODEL = "stabilityai/stable-diffusion-2-1-base", "DeepFloyd/IF-I-XL-v1.0"


def make_tiny_sd(path: str | Path) -> Path:
    """A Stable-Diffusion-shaped pipeline: latents [B, 4, 8, 8] of 16×16 images (VAE scale factor 2), with SD 2.1
    base's own scheduler config."""
    torch.manual_seed(0)
    path = Path(path)
    tokenizer = _tiny_clip_tokenizer(path / "tokenizer")
    pipe = StableDiffusionPipeline(
        vae=_tiny_vae(),
        text_encoder=_tiny_clip_text_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        unet=_tiny_sd_unet(),
        scheduler=PNDMScheduler.from_config(shipped_config(SD_MODEL)),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def make_tiny_if(path: str | Path) -> Path:
    """A DeepFloyd-IF-stage-I-shaped pipeline: pixels [B, 3, 16, 16], UNet output [B, 6, 16, 16] (ε and variance),
    with IF-I-XL's own scheduler config."""
    torch.manual_seed(0)
    path = Path(path)
    tokenizer = _tiny_t5_tokenizer()
    pipe = IFPipeline(
        tokenizer=tokenizer,
        text_encoder=_tiny_t5_encoder(len(tokenizer)),
        unet=_tiny_if_unet(),
        scheduler=DDPMScheduler.from_config(shipped_config(IF_MODEL)),
        safety_checker=None,
        feature_extractor=None,
        watermarker=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(path)
    return path


def with_prediction_type(source: Path, path: str | Path, prediction_type: str) -> Path:
    """A copy of the pipeline at `source` whose scheduler says its UNet predicts `prediction_type` (the same weights,
    so the two checkpoints' outputs are related exactly: v-prediction reads the ε-model's output as v)."""
    path = Path(path)
    shutil.copytree(source, path)
    config_path = path / "scheduler" / "scheduler_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "prediction_type": prediction_type}))
    return path


def _tiny_clip_tokenizer(vocab_dir: Path) -> CLIPTokenizer:
    """Byte-level BPE over letters plus a few whole words, written as vocab.json + merges.txt like a real CLIP vocab."""
    vocab_dir.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>"]
    tokens += list(string.ascii_lowercase + ",") + [c + "</w>" for c in string.ascii_lowercase + ","]
    merges: list[str] = []
    for word in WORDS:
        merges += _bpe_merges(word, tokens)
    (vocab_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (vocab_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer(
        vocab=str(vocab_dir / "vocab.json"), merges=str(vocab_dir / "merges.txt"), model_max_length=CLIP_MAX_LENGTH
    )


def _bpe_merges(word: str, tokens: list[str]) -> list[str]:
    """Left-to-right merges that assemble `word` whole, adding each new symbol to `tokens`."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    merges = []
    while len(symbols) > 1:
        merged = symbols[0] + symbols[1]
        merges.append(f"{symbols[0]} {symbols[1]}")
        if merged not in tokens:
            tokens.append(merged)
        symbols = [merged] + symbols[2:]
    return merges


def _tiny_t5_tokenizer() -> T5Tokenizer:
    """A Unigram T5 tokenizer from an in-code vocabulary: no sentencepiece model file needed."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(f"▁{w}", -1.0) for w in WORDS] + [(c, -5.0) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=77)


def _tiny_clip_text_encoder(vocab_size: int) -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CLIP_MAX_LENGTH,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )
    return CLIPTextModel(config).eval()


def _tiny_t5_encoder(vocab_size: int) -> T5EncoderModel:
    config = T5Config(vocab_size=vocab_size, d_model=TEXT_DIM, d_ff=37, d_kv=8, num_layers=2, num_heads=2)
    return T5EncoderModel(config).eval()


def _tiny_vae() -> AutoencoderKL:
    """Two blocks, so one downsampling: vae_scale_factor 2, 16×16 pixels ↔ 8×8 latents."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=16,
    )


def _tiny_sd_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
    )


def _tiny_if_unet() -> UNet2DConditionModel:
    """IF-I's block layout in miniature: text-pooled addition embedding, added-KV cross attention, 6 output channels."""
    return UNet2DConditionModel(
        sample_size=16,
        in_channels=3,
        out_channels=6,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        cross_attention_dim=TEXT_DIM,
        encoder_hid_dim=TEXT_DIM,
        attention_head_dim=8,
        addition_embed_type="text",
        addition_embed_type_num_heads=2,
        cross_attention_norm="group_norm",
        resnet_time_scale_shift="scale_shift",
        act_fn="gelu",
    )
