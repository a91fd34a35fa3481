"""The toy world's models as architectures: the tokenizer built from the world's words, the tiny CLIP, the pixel
UNet and its DDPM scheduler. `train.py` trains them; `prior.py` and `scorer.py` load what it exports."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from torch import Tensor

from dreamfusion.nerf.cameras import VIEW_SUFFIXES
from dreamfusion.toyworld import world
from dreamfusion.toyworld.assets import MAX_TOKENS, NOISE_SCHEDULE

#: Pixel normalisation of the toy CLIP's image encoder (written to its preprocessor_config.json).
IMAGE_MEAN, IMAGE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def vocabulary_words() -> list[str]:
    words = ["a", ","] + list(world.COLOURS) + [world.ANY_COLOUR] + list(world.SHAPES) + list(world.SPOT_WORDS)
    words += [w for suffix in VIEW_SUFFIXES.values() for w in suffix.replace(",", " ").split()]
    return list(dict.fromkeys(words))


def write_tokenizer(folder: Path):
    """A CLIP BPE tokenizer whose merges spell every world word whole; other words fall back to letters."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase) + [","]
    vocab = ["<|startoftext|>", "<|endoftext|>"] + letters + [f"{c}</w>" for c in letters]
    merges = []
    for word in vocabulary_words():
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append(f"{pieces[0]} {pieces[1]}")
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.append(pieces[0])
    vocab, merges = list(dict.fromkeys(vocab)), list(dict.fromkeys(merges))
    (folder / "vocab.json").write_text(json.dumps({tok: i for i, tok in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(folder, model_max_length=MAX_TOKENS)
    tokenizer.save_pretrained(folder)
    return tokenizer


def clip_config(tokenizer):
    from transformers import CLIPConfig

    special = dict(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        **special,
    )
    vision = dict(
        image_size=32, patch_size=4, hidden_size=128, intermediate_size=256, num_hidden_layers=4, num_attention_heads=4
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=64)


def unet_config(cross_attention_dim: int, resolution: int) -> dict:
    """(32, 64, 64) channels, one layer per block, cross-attention only at 16² and 8² (none at full resolution)."""
    return dict(
        sample_size=resolution,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=16,
        norm_num_groups=8,
    )


def make_scheduler():
    """The toy world's DDPM schedule (`assets.NOISE_SCHEDULE`, the analytic prior's too)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**NOISE_SCHEDULE)


def tokenize(tokenizer, captions: list[str]) -> Tensor:
    return tokenizer(
        captions, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids  # [B, 16]


def to_clip_pixels(images: Tensor) -> Tensor:
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def text_encoder_from_clip(clip):
    """The CLIP's text tower as a standalone CLIPTextModel: what the UNet is conditioned on, as in SD."""
    from transformers import CLIPTextModel

    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder.eval()


def new_unet(cross_attention_dim: int, resolution: int):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**unet_config(cross_attention_dim, resolution))
