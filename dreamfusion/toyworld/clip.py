"""The toy world's CLIP in plain torch: the text encoder the prior is conditioned on and the scorer's CLIP (text and
vision towers with their projections), written op for op as transformers runs them (SDPA attention), so that they
load the shipped safetensors and give bit-identical outputs without importing transformers, whose CLIP module alone
takes seconds to import (`tests/unit/toyworld/test_plain_models.py` compares the two).

The architecture comes from transformers' `config.json`; a config this port would compute wrong (`ASSUMED`) is
refused. Only what the toy models use is here: learned positions, pre-norm layers, quick-GELU, no dropout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from dreamfusion.errors import ConfigError

#: Config values (of a text or vision tower) the port computes; a missing key means transformers' default.
ASSUMED: dict[str, Any] = {"hidden_act": "quick_gelu", "attention_dropout": 0.0, "dropout": 0.0}


def load_text_encoder(folder: Path) -> TextTransformer:
    """transformers' `CLIPTextModel` from its folder (`config.json`, `model.safetensors`)."""
    config = json.loads((folder / "config.json").read_text())
    return _loaded(TextTransformer(config), folder / "model.safetensors")


def load_clip(folder: Path) -> CLIP:
    """transformers' `CLIPModel` from its folder (`config.json`, `model.safetensors`)."""
    config = json.loads((folder / "config.json").read_text())
    return _loaded(CLIP(config), folder / "model.safetensors")


def _loaded(model: Any, path: Path) -> Any:
    # The weights stay where safetensors maps them (`assign=True`), as transformers leaves them: a CPU
    # matrix-vector product rounds differently on a differently aligned copy, which a batch of one would show.
    model.load_state_dict(load_file(path), assign=True)
    return model.eval()


def check_config(config: dict[str, Any], tower: str) -> None:
    for key, value in ASSUMED.items():
        if config.get(key, value) != value:
            raise ConfigError(f"clip config: {tower} {key}={config[key]!r} is not computed by the plain-torch CLIP")
    if config.get("eos_token_id") == 2:  # transformers then pools at the highest id, the checkpoints before 4.31
        raise ConfigError(f"clip config: {tower} eos_token_id=2 is not computed by the plain-torch CLIP")


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        """x [B, L, D]; mask [B, 1, L, L] bool (True: attend) or None → [B, L, D]."""
        b, n, _ = x.shape
        q, k, v = (p(x).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, scale=self.scale, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).contiguous().reshape(b, n, -1))  # [B, L, D]


class MLP(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))  # quick-GELU


class EncoderLayer(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        dim, eps = config["hidden_size"], config.get("layer_norm_eps", 1e-5)
        self.self_attn = SelfAttention(dim, config["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, config["intermediate_size"])
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
        x = x + self.self_attn(self.layer_norm1(x), mask, causal)
        return x + self.mlp(self.layer_norm2(x))


class Encoder(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([EncoderLayer(config) for _ in range(config["num_hidden_layers"])])

    def forward(self, x: Tensor, mask: Tensor | None = None, causal: bool = False) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask, causal)
        return x


class TextEmbeddings(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(config["vocab_size"], config["hidden_size"])
        self.position_embedding = nn.Embedding(config["max_position_embeddings"], config["hidden_size"])

    def forward(self, ids: Tensor) -> Tensor:
        positions = torch.arange(ids.shape[-1], device=ids.device)[None]  # [1, L]
        return self.token_embedding(ids) + self.position_embedding(positions)


class TextTransformer(nn.Module):
    """CLIP's text tower: token ids → hidden states under a causal mask, final layer norm (`CLIPTextModel`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        check_config(config, "text")
        self.hidden_size, self.eos_token_id = config["hidden_size"], config["eos_token_id"]
        self.max_tokens = config["max_position_embeddings"]
        self.embeddings = TextEmbeddings(config)
        self.encoder = Encoder(config)
        self.final_layer_norm = nn.LayerNorm(config["hidden_size"], eps=config.get("layer_norm_eps", 1e-5))

    def forward(self, ids: Tensor, padding: Tensor | None = None) -> Tensor:
        """ids [B, L] → last hidden states [B, L, D]; `padding` [B, L] (1: token, 0: pad) masks the pads as keys.

        As transformers does: without a pad in the batch, SDPA's own causal flag; with one, a bool mask of causal
        and padding together."""
        x = self.embeddings(ids)
        if padding is None or bool(padding.all()):
            return self.final_layer_norm(self.encoder(x, None, causal=True))
        n = ids.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=ids.device).tril()  # [L, L]
        mask = causal[None, None] & padding.bool()[:, None, None, :]  # [B, 1, L, L]
        return self.final_layer_norm(self.encoder(x, mask))

    def pooled(self, ids: Tensor, states: Tensor) -> Tensor:
        """[B, D] the states at each sequence's first end-of-text token."""
        eos = (ids.to(torch.int) == self.eos_token_id).int().argmax(dim=-1)  # [B]
        return states[torch.arange(states.shape[0], device=states.device), eos]


class VisionEmbeddings(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        dim, patch = config["hidden_size"], config["patch_size"]
        self.class_embedding = nn.Parameter(torch.zeros(dim))
        self.patch_embedding = nn.Conv2d(config.get("num_channels", 3), dim, patch, stride=patch, bias=False)
        self.position_embedding = nn.Embedding((config["image_size"] // patch) ** 2 + 1, dim)

    def forward(self, pixels: Tensor) -> Tensor:
        """[B, 3, S, S] → [B, 1 + patches, D]: the class token, then one token per patch, with positions."""
        patches = self.patch_embedding(pixels).flatten(2).transpose(1, 2)  # [B, P, D]
        tokens = torch.cat([self.class_embedding.expand(pixels.shape[0], 1, -1), patches], dim=1)
        positions = torch.arange(tokens.shape[1], device=pixels.device)[None]  # [1, 1 + P]
        return tokens + self.position_embedding(positions)


class VisionTransformer(nn.Module):
    """CLIP's vision tower: patches → encoder → the class token, layer-normed (`CLIPVisionModel`'s pooler)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        check_config(config, "vision")
        eps = config.get("layer_norm_eps", 1e-5)
        self.image_size = config["image_size"]
        self.embeddings = VisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config["hidden_size"], eps=eps)  # transformers' spelling: the state-dict key
        self.encoder = Encoder(config)
        self.post_layernorm = nn.LayerNorm(config["hidden_size"], eps=eps)

    def forward(self, pixels: Tensor) -> Tensor:
        """[B, 3, S, S] normalised pixels → [B, D] pooled."""
        states = self.encoder(self.pre_layrnorm(self.embeddings(pixels)))
        return self.post_layernorm(states[:, 0, :])


class CLIP(nn.Module):
    """Both towers and their projections (`CLIPModel.get_text_features`, `get_image_features`)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        text, vision, dim = config["text_config"], config["vision_config"], config["projection_dim"]
        self.text_model = TextTransformer(text)
        self.vision_model = VisionTransformer(vision)
        self.visual_projection = nn.Linear(vision["hidden_size"], dim, bias=False)
        self.text_projection = nn.Linear(text["hidden_size"], dim, bias=False)
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def text_features(self, ids: Tensor, padding: Tensor | None = None) -> Tensor:
        """ids [B, L] (padding [B, L]) → [B, P] projected, unnormalised text embeddings."""
        return self.text_projection(self.text_model.pooled(ids, self.text_model(ids, padding)))

    def image_features(self, pixels: Tensor) -> Tensor:
        """[B, 3, S, S] normalised pixels → [B, P] projected, unnormalised image embeddings."""
        return self.visual_projection(self.vision_model(pixels))
