"""The toy prior's UNet in plain torch: diffusers' `UNet2DConditionModel`, cut down to what the shipped config uses
and written op for op as diffusers runs it, so that ε̂ is bit-identical and a trial loads the prior without
importing diffusers (seconds of a worker's start-up; `tests/unit/toyworld/test_plain_models.py` compares the two).

It reads diffusers' own files: the `config.json` for the architecture and the safetensors under diffusers' state-dict
keys. A config that asks for anything this port does not compute (`ASSUMED`) is refused rather than run wrong.

Classifier-free guidance asks for ε̂ of the same x_t and t under k text conditions (k = 2: with and without the
prompt). Everything before the text first enters (the input conv, the first blocks' resnets and downsampling, the
first transformer's self-attention) is then the same k times over: given x_t [B] and text states [k·B], the UNet
computes that trunk once and widens the batch to k·B at the first cross-attention (`widen`), so the guided batch
costs a third less (`speed.shared_trunk`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import Tensor, nn

from dreamfusion.errors import ConfigError

#: Config values the port computes, as `UNet2DConditionModel` names them (a missing key means diffusers' default,
#: the same value). Anything else (class or added embeddings, linear projections, scale-shift norms, ...) is refused.
ASSUMED: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": None,
    "attention_type": "default",
    "center_input_sample": False,
    "class_embed_type": None,
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "cross_attention_norm": None,
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "encoder_hid_dim": None,
    "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "num_attention_heads": None,
    "only_cross_attention": False,
    "resnet_out_scale_factor": 1.0,
    "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default",
    "time_cond_proj_dim": None,
    "time_embedding_act_fn": None,
    "time_embedding_dim": None,
    "time_embedding_type": "positional",
    "timestep_post_act": None,
    "transformer_layers_per_block": 1,
    "upcast_attention": False,
    "use_linear_projection": False,
}
DOWN_BLOCKS = {"DownBlock2D": False, "CrossAttnDownBlock2D": True}  # block type → has cross-attention
UP_BLOCKS = {"UpBlock2D": False, "CrossAttnUpBlock2D": True}
#: diffusers' Transformer2DModel normalises its input with this eps, whatever the config's `norm_eps`.
TRANSFORMER_NORM_EPS = 1e-6


def load_unet(folder: Path, dtype: torch.dtype = torch.float32) -> ToyUNet:
    """The UNet of a diffusers checkpoint folder (`config.json`, `diffusion_pytorch_model.safetensors`) in `dtype`.

    The weights stay where safetensors maps them (`assign=True`), as diffusers leaves them: a CPU matrix-vector
    product rounds differently on a differently aligned copy, and batch-1 ε̂ would no longer be bit-identical."""
    config = json.loads((folder / "config.json").read_text())
    unet = ToyUNet(config)
    unet.load_state_dict(load_file(folder / "diffusion_pytorch_model.safetensors"), assign=True)
    return unet.to(dtype)


class ToyUNet(nn.Module):
    """ε̂(x_t, t, text states): `UNet2DConditionModel.forward(...).sample` for the configs `ASSUMED` describes."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        check_config(config)
        self.config = config
        channels: list[int] = list(config["block_out_channels"])
        groups, eps, layers = config["norm_num_groups"], config["norm_eps"], config["layers_per_block"]
        context = config["cross_attention_dim"]
        heads = config["attention_head_dim"]  # diffusers' historical name for the number of heads
        heads = [heads] * len(channels) if isinstance(heads, int) else list(heads)
        temb = channels[0] * 4
        self.time_channels, self.flip_sin_to_cos = channels[0], config["flip_sin_to_cos"]
        self.freq_shift = config["freq_shift"]
        # submodules in diffusers' order, so that the state dict (and the prior's fingerprint) lists them alike
        self.conv_in = nn.Conv2d(config["in_channels"], channels[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(channels[0], temb)
        self.down_blocks = nn.ModuleList()
        for i, kind in enumerate(config["down_block_types"]):
            cin, cout, last = channels[max(i - 1, 0)], channels[i], i == len(channels) - 1
            attn = heads[i] if DOWN_BLOCKS[kind] else 0
            self.down_blocks.append(DownBlock(cin, cout, temb, layers, attn, context, groups, eps, not last))
        self.up_blocks = nn.ModuleList()
        rev, rev_heads = channels[::-1], heads[::-1]
        for i, kind in enumerate(config["up_block_types"]):
            prev, cout, skip = rev[max(i - 1, 0)], rev[i], rev[min(i + 1, len(rev) - 1)]
            attn = rev_heads[i] if UP_BLOCKS[kind] else 0
            last = i == len(rev) - 1
            self.up_blocks.append(UpBlock(prev, cout, skip, temb, layers + 1, attn, context, groups, eps, not last))
        self.mid_block = MidBlock(channels[-1], temb, heads[-1], context, groups, eps)
        self.conv_norm_out = nn.GroupNorm(groups, channels[0], eps=eps)
        self.conv_out = nn.Conv2d(channels[0], config["out_channels"], 3, padding=1)

    def forward(self, sample: Tensor, timesteps: Tensor, context: Tensor) -> Tensor:
        """sample [B, C, H, W], timesteps [B] (or a scalar), context [k·B, L, D] text states → ε̂ [k·B, C, H, W] of
        the k copies of (sample, timesteps), each under its own text; k = 1 is diffusers' call."""
        t = timesteps[None] if timesteps.ndim == 0 else timesteps
        t_emb = timestep_embedding(
            widen(t.expand(sample.shape[0]), context.shape[0]),
            self.time_channels,
            self.flip_sin_to_cos,
            self.freq_shift,
        )
        # every resnet of diffusers applies SiLU to the same embedding before its projection: done once here
        temb = F.silu(self.time_embedding(t_emb.to(sample.dtype)))  # [B, 4·C0]
        x = self.conv_in(sample)
        skips = [x]
        for down in self.down_blocks:
            x, outputs = down(x, temb, context)
            skips += outputs
        x = self.mid_block(x, temb, context)
        for up in self.up_blocks:
            x, skips = up(x, skips, temb, context)
        return widen(self.conv_out(F.silu(self.conv_norm_out(x))), context.shape[0])


def widen(x: Tensor, batch: int) -> Tensor:
    """x [b, ...] as `batch` = k·b rows: k copies one after another, as `torch.cat([x] * k)` lays them out."""
    return x if x.shape[0] == batch else x.repeat(batch // x.shape[0], *[1] * (x.ndim - 1))


def check_config(config: dict[str, Any]) -> None:
    for key, value in ASSUMED.items():
        if config.get(key, value) != value:
            raise ConfigError(f"unet config: {key}={config[key]!r} is not computed by the plain-torch toy UNet")
    for key, known in (("down_block_types", DOWN_BLOCKS), ("up_block_types", UP_BLOCKS)):
        unknown = [kind for kind in config[key] if kind not in known]
        if unknown:
            raise ConfigError(f"unet config: {key} {unknown[0]!r} is not computed by the plain-torch toy UNet")


def timestep_embedding(t: Tensor, channels: int, flip_sin_to_cos: bool, freq_shift: float) -> Tensor:
    """[B] timesteps → [B, channels] sinusoids, as diffusers' `get_timestep_embedding` rounds them (float32)."""
    half = channels // 2
    exponent = -math.log(10000) * torch.arange(0, half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))  # [half]
    angles = t[:, None].float() * freqs[None, :]  # [B, half]
    sin, cos = torch.sin(angles), torch.cos(angles)
    return torch.cat([cos, sin] if flip_sin_to_cos else [sin, cos], dim=-1)


class TimestepEmbedding(nn.Module):
    def __init__(self, channels: int, dim: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(channels, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class ResnetBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added between, and a 1×1 shortcut where channels change."""

    def __init__(self, cin: int, cout: int, temb: int, groups: int, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps=eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps=eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        """x [B, Cin, H, W], temb [B, T] already through SiLU → [B, Cout, H, W]."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h + self.time_emb_proj(temb)[: h.shape[0], :, None, None])
        h = self.conv2(F.silu(h))
        shortcut = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return shortcut + h


class Attention(nn.Module):
    """Multi-head attention over `context` (self-attention without one), no biases on q, k, v."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(context_dim, dim, bias=False)
        self.to_v = nn.Linear(context_dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # diffusers' [Linear, Dropout]: the key to_out.0

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """x [B, N, C], context [B, M, D] (None: x) → [B, N, C]."""
        b = x.shape[0]
        kv = x if context is None else context
        q, k, v = self.to_q(x), self.to_k(kv), self.to_v(kv)
        d = k.shape[-1] // self.heads
        q, k, v = (y.view(b, -1, self.heads, d).transpose(1, 2) for y in (q, k, v))  # [B, h, N or M, d]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False)
        return self.to_out[0](out.transpose(1, 2).reshape(b, -1, self.heads * d))


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: Tensor) -> Tensor:
        h, gate = self.proj(x).chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        # diffusers' [GEGLU, Dropout, Linear]: the identity keeps the output layer at the key net.2
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Identity(), nn.Linear(dim * 4, dim)])

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class TransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to the text, and a GEGLU feed-forward, each added back."""

    def __init__(self, dim: int, context_dim: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, context_dim, heads)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        """x [b, N, C] tokens of the feature map, context [B, L, D] (B = k·b) → [B, N, C]: the text enters here."""
        x = widen(self.attn1(self.norm1(x)) + x, context.shape[0])
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """diffusers' Transformer2DModel on a feature map: norm, 1×1 in, the block over H·W tokens, 1×1 out, residual."""

    def __init__(self, channels: int, context_dim: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, context_dim, heads)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x)).permute(0, 2, 3, 1).reshape(b, h * w, c)  # [B, H·W, C]
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        out = self.proj_out(tokens.reshape(-1, h, w, c).permute(0, 3, 1, 2).contiguous())
        return out + widen(x, out.shape[0])


class DownBlock(nn.Module):
    """`layers` resnets (each followed by a transformer where `heads` > 0), then a stride-2 conv unless last."""

    def __init__(
        self, cin: int, cout: int, temb: int, layers: int, heads: int, context: int, groups: int, eps: float, down: bool
    ) -> None:
        super().__init__()
        ins = [cin] + [cout] * (layers - 1)
        self.attentions = nn.ModuleList([SpatialTransformer(cout, context, heads, groups) for _ in ins if heads])
        self.resnets = nn.ModuleList([ResnetBlock(c, cout, temb, groups, eps) for c in ins])
        self.downsamplers = nn.ModuleList([Downsample(cout)] if down else [])

    def forward(self, x: Tensor, temb: Tensor, context: Tensor) -> tuple[Tensor, list[Tensor]]:
        """→ the block's output and the skips it leaves for the up path (one per layer, one after downsampling)."""
        skips = []
        for j, resnet in enumerate(self.resnets):
            x = resnet(x, temb)
            if self.attentions:
                x = self.attentions[j](x, context)
            skips.append(x)
        for downsample in self.downsamplers:
            x = downsample(x)
            skips.append(x)
        return x, skips


class MidBlock(nn.Module):
    """Resnet, transformer, resnet at the lowest resolution."""

    def __init__(self, channels: int, temb: int, heads: int, context: int, groups: int, eps: float) -> None:
        super().__init__()
        self.attentions = nn.ModuleList([SpatialTransformer(channels, context, heads, groups)])
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, temb, groups, eps) for _ in range(2)])

    def forward(self, x: Tensor, temb: Tensor, context: Tensor) -> Tensor:
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class UpBlock(nn.Module):
    """`layers` resnets, each on its input concatenated with the down path's latest skip (a transformer after each
    where `heads` > 0), then nearest ×2 and a conv unless last."""

    def __init__(
        self,
        prev: int,
        cout: int,
        skip: int,
        temb: int,
        layers: int,
        heads: int,
        context: int,
        groups: int,
        eps: float,
        up: bool,
    ) -> None:
        super().__init__()
        ins = [(prev if j == 0 else cout) + (skip if j == layers - 1 else cout) for j in range(layers)]
        self.attentions = nn.ModuleList([SpatialTransformer(cout, context, heads, groups) for _ in ins if heads])
        self.resnets = nn.ModuleList([ResnetBlock(c, cout, temb, groups, eps) for c in ins])
        self.upsamplers = nn.ModuleList([Upsample(cout)] if up else [])

    def forward(self, x: Tensor, skips: list[Tensor], temb: Tensor, context: Tensor) -> tuple[Tensor, list[Tensor]]:
        """→ the block's output and the skips left for the blocks after it: it takes one per resnet, from the end."""
        for j, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, widen(skips[-1 - j], x.shape[0])], dim=1), temb)
            if self.attentions:
                x = self.attentions[j](x, context)
        for upsample in self.upsamplers:
            x = upsample(x)
        return x, skips[: -len(self.resnets)]


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
