"""A trained field grown into a larger one that computes the same function: the start of a coarse → fine trial.

Function-preserving growth in the manner of Net2Net (Chen, Goodfellow and Shlens, ICLR 2016). The target field
starts from its own fresh initialisation; the part the source covers is overwritten with the source, and every
connection from a new part into an old one is zeroed, so that the new parts cannot change the output until training
moves them. Because the new parts keep their random values, they receive gradients from the first step:

- grid level i of the source is resampled trilinearly onto level i of the target (first F_source channels);
  extra levels and channels keep their fresh init and feed the old hidden units through zero weights;
- hidden units beyond the source's width keep their fresh input weights and reach the output through zero weights;
- hidden layers beyond the source's depth pass the old units through unchanged (identity weights, zero bias: the
  units are outputs of a ReLU, so non-negative, and ReLU(h) = h).

The result equals the source exactly (up to float rounding) when every target level's `resolution − 1` is a multiple
of its source level's: trilinear interpolation reproduces a function that is trilinear on every cell of a nested grid.
Otherwise it equals the source at the target's grid points and differs in between by at most the trilinear
interpolation error of one target cell; the size presets are not nested (small 8/16/32 → medium 16/25/40/64), and
the render of a grown field stays close to the source's (the trial tests measure how close).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamfusion.config.schema import NerfConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.field import NeRFField, level_resolutions

#: The size fields a target must not shrink.
SIZE_FIELDS = ("grid_levels", "grid_features", "mlp_width", "mlp_depth")


def check_growable(source: NerfConfig, target: NerfConfig) -> None:
    """A ConfigError naming the `nerf.*` key that keeps `target` from holding `source`'s function."""
    if source.encoding != "dense_grid" or target.encoding != "dense_grid":
        if source != target:
            raise ConfigError("nerf.encoding: only dense_grid fields can grow; a hash_grid source needs the same nerf")
        return
    for key in SIZE_FIELDS:
        if getattr(target, key) < getattr(source, key):
            raise ConfigError(
                f"nerf.{key}: {getattr(target, key)} is smaller than the source field's {getattr(source, key)}; "
                f"a trial can start from a field of its own size or a smaller one"
            )
    shrunk = [(s, t) for s, t in zip(level_resolutions(source), level_resolutions(target)) if t < s]
    if shrunk:
        raise ConfigError(
            f"nerf.grid_max_resolution: target grid levels {level_resolutions(target)} are coarser than the "
            f"source's {level_resolutions(source)}"
        )
    if source.mlp_depth == 0 and target.mlp_depth > 0:
        raise ConfigError("nerf.mlp_depth: a source field without hidden layers can only start a field without any")
    for key in ("blob_density", "blob_radius"):
        if getattr(target, key) != getattr(source, key):
            raise ConfigError(
                f"nerf.{key}: {getattr(target, key)} differs from the source field's {getattr(source, key)}; the "
                f"blob is part of the density a trial starts from, so it must stay the same"
            )


@torch.no_grad()
def grow_field(source: NeRFField, target: NeRFField) -> None:
    """Overwrite `target`'s weights so that it computes `source`'s density and albedo (see the module's note)."""
    check_growable(source.cfg, target.cfg)
    if source.cfg.encoding != "dense_grid":
        target.load_state_dict(source.state_dict())
        return
    levels = zip(_levels(source), _levels(target))
    for old, new in levels:
        f = old.shape[1]
        new[:, :f] = old if old.shape == new[:, :f].shape else resample(old, new.shape[-1])
    old_features = _feature_index(source.cfg, target.cfg)
    _grow_decoder(_linears(source.decoder), _linears(target.decoder), old_features)


def resample(grid: Tensor, resolution: int) -> Tensor:
    """[1, F, r, r, r] → [1, F, R, R, R]: the trilinear function `grid` stands for, read at the vertices of an R³ grid
    over the same [-1, 1]³ (the field reads its grids with align_corners=True, so vertices sit on the bounds)."""
    c = torch.linspace(-1, 1, resolution, device=grid.device, dtype=grid.dtype)
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    points = torch.stack([x, y, z], -1)[None]  # [1, R, R, R, 3], (x, y, z) as grid_sample reads them
    return F.grid_sample(grid, points, mode="bilinear", align_corners=True)


def _levels(field: NeRFField) -> list[nn.Parameter]:
    levels: nn.ParameterList = field.encoding.levels  # type: ignore[assignment]
    return list(levels)


def _feature_index(source: NerfConfig, target: NerfConfig) -> Tensor:
    """[L_s·F_s] the target encoder-output index of each source feature (level-major, as the encoder concatenates)."""
    levels = torch.arange(source.grid_levels)[:, None]
    channels = torch.arange(source.grid_features)[None, :]
    return (levels * target.grid_features + channels).flatten()


def _linears(decoder: nn.Module) -> list[nn.Linear]:
    return [m for m in decoder.modules() if isinstance(m, nn.Linear)]


def _grow_decoder(source: list[nn.Linear], target: list[nn.Linear], old_features: Tensor) -> None:
    """Embed the source MLP in the target's: old units read only old inputs, the output reads only old units."""
    hidden_s, hidden_t = source[:-1], target[:-1]
    width = source[0].out_features if hidden_s else 0
    old_inputs = old_features
    for k, layer in enumerate(hidden_t):
        weight: Tensor = torch.eye(width)  # a layer the source lacks passes the old units through
        bias: Tensor = torch.zeros(width)
        if k < len(hidden_s):
            weight, bias = hidden_s[k].weight, hidden_s[k].bias
        layer.weight[:width] = 0
        layer.weight[:width, old_inputs] = weight.to(layer.weight)
        layer.bias[:width] = bias.to(layer.bias)
        old_inputs = torch.arange(width)
    out_s, out_t = source[-1], target[-1]
    out_t.weight.zero_()
    out_t.weight[:, old_inputs] = out_s.weight
    out_t.bias.copy_(out_s.bias)
