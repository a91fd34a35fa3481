"""The NeRF: density and albedo over the unit ball, plus the background the rays exit into.

A dense multi-resolution feature grid read with `grid_sample` and a small MLP decoder was the fastest pure-torch
field measured on CPU. On a CUDA GPU a tiny-cuda-nn hash grid can replace the dense grid (`encoding: hash_grid`).
The field knows nothing of SDS or priors: it maps points to (σ, albedo).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dreamfusion.config.schema import NerfConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.trilinear import compiled, level_table, lookup, weighted_gradient


def level_resolutions(cfg: NerfConfig) -> list[int]:
    """Geometric spacing from the coarsest to the finest level."""
    if cfg.grid_levels == 1:
        return [cfg.grid_max_resolution]
    growth = (cfg.grid_max_resolution / cfg.grid_base_resolution) ** (1 / (cfg.grid_levels - 1))
    return [int(round(cfg.grid_base_resolution * growth**i)) for i in range(cfg.grid_levels)]


class DenseGridEncoding(nn.Module):
    """Features of a point = concatenation of trilinear reads from each level's [F, R, R, R] grid: one
    `grid_sample` per level, or all levels in one fused lookup (`fused`, where the compiled kernel runs:
    `dreamfusion/nerf/trilinear.py`)."""

    def __init__(self, cfg: NerfConfig, fused: bool = False) -> None:
        super().__init__()
        self.resolutions = level_resolutions(cfg)
        self.levels = nn.ParameterList(
            nn.Parameter(torch.randn(1, cfg.grid_features, r, r, r) * 1e-2) for r in self.resolutions
        )
        self.out_dim = cfg.grid_features * cfg.grid_levels
        self.fused = fused

    def table(self) -> Tensor:
        """The levels as one [S, F] table (a copy, differentiable): what the fused lookup and the gradient read."""
        return level_table(list(self.levels))

    def forward(self, x: Tensor, table: Tensor | None = None) -> Tensor:
        """x [N, 3] in [-1, 1] → [N, L·F]; `table`: this encoding's `table()`, where the caller already made it."""
        if self.fused and compiled(x):
            return lookup(self.table() if table is None else table, x, self.resolutions)
        grid = x.view(1, -1, 1, 1, 3)
        feats = [F.grid_sample(g, grid, mode="bilinear", align_corners=True) for g in self.levels]  # [1, F, N, 1, 1]
        return torch.cat(feats, dim=1).view(self.out_dim, -1).t()

    def weighted_gradient(self, x: Tensor, u: Tensor, table: Tensor | None = None) -> Tensor:
        """[N, 3]: ∇ₓ(u · features(x)) for u [N, L·F] held fixed, exact (trilinear reads are linear along each
        axis inside a cell) and contracted as the corners are read."""
        return weighted_gradient(self.table() if table is None else table, x, self.resolutions, u)

    def total_variation(self) -> Tensor:
        """Mean squared difference of neighbouring voxels of the finest level: a smoothness prior on the field."""
        g = self.levels[-1]
        return sum(((g.diff(dim=d)) ** 2).mean() for d in (2, 3, 4))


class HashGridEncoding(nn.Module):
    """Instant-NGP hash grid through tiny-cuda-nn: for GPU runs of the `large` preset at high resolution."""

    def __init__(self, cfg: NerfConfig) -> None:
        super().__init__()
        try:
            import tinycudann as tcnn
        except ImportError:
            raise ConfigError(
                "nerf.encoding: hash_grid needs the tinycudann package on a CUDA GPU; use dense_grid"
            ) from None
        growth = (cfg.grid_max_resolution / cfg.grid_base_resolution) ** (1 / max(cfg.grid_levels - 1, 1))
        self.encoding = tcnn.Encoding(
            3,
            {
                "otype": "HashGrid",
                "n_levels": cfg.grid_levels,
                "n_features_per_level": cfg.grid_features,
                "log2_hashmap_size": 19,
                "base_resolution": cfg.grid_base_resolution,
                "per_level_scale": growth,
            },
        )
        self.out_dim = cfg.grid_features * cfg.grid_levels

    def forward(self, x: Tensor) -> Tensor:
        return self.encoding((x + 1) / 2).float()  # tcnn reads [0, 1]

    def total_variation(self) -> Tensor:
        return torch.zeros((), device=next(self.parameters()).device)


def mlp(in_dim: int, width: int, depth: int, out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(depth):
        layers += [nn.Linear(dim, width), nn.ReLU(inplace=True)]
        dim = width
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class NeRFField(nn.Module):
    """σ(x) = softplus(raw(x) + blob(x)), albedo(x) = sigmoid(...): a density blob at init so SDS starts from an
    object, not from empty space (Magic3D's `blob_magic3d` bias)."""

    def __init__(self, cfg: NerfConfig, fused_grid: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoding = HashGridEncoding(cfg) if cfg.encoding == "hash_grid" else DenseGridEncoding(cfg, fused_grid)
        self.decoder = mlp(self.encoding.out_dim, cfg.mlp_width, cfg.mlp_depth, 4)

    @property
    def has_gradient(self) -> bool:
        """Whether `with_gradient` is available: the dense grid's derivative is closed-form, a hash grid's is not."""
        return isinstance(self.encoding, DenseGridEncoding)

    def blob(self, x: Tensor) -> Tensor:
        # x [N, 3] → [N]
        return self.cfg.blob_density * (1 - x.norm(dim=-1) / self.cfg.blob_radius)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # x [N, 3] → σ [N], albedo [N, 3]
        out = self.decoder(self.encoding(x))
        sigma = F.softplus(out[:, 0] + self.blob(x))
        return sigma, torch.sigmoid(out[:, 1:])

    def density(self, x: Tensor) -> Tensor:
        return self(x)[0]

    def with_gradient(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """σ [N], albedo [N, 3] and the exact ∇σ [N, 3], so normals cost no extra field reads: the decoder's
        raw-density gradient with respect to its input, one vector [N, D] per point, contracted with the grid's
        derivatives as its corners are read."""
        encoding = self.encoding
        assert isinstance(encoding, DenseGridEncoding), "with_gradient needs the dense grid (see has_gradient)"
        table = encoding.table()  # one copy of the levels for both reads, and one backward into them
        feats = encoding(x, table)  # [N, D]
        out, d_raw = _decode_with_input_gradient(self.decoder, feats)  # [N, 4], [N, D]
        z = out[:, 0] + self.blob(x)
        d_blob = -self.cfg.blob_density / self.cfg.blob_radius * safe_normalize(x)  # [N, 3]
        grad = torch.sigmoid(z)[:, None] * (encoding.weighted_gradient(x, d_raw, table) + d_blob)  # softplus' = sigmoid
        return F.softplus(z), torch.sigmoid(out[:, 1:]), grad

    def regularisers(self) -> dict[str, Tensor]:
        return {"density_tv": self.encoding.total_variation()}


def _decode_with_input_gradient(decoder: nn.Sequential, h: Tensor) -> tuple[Tensor, Tensor]:
    """The decoder's output [N, O] and the gradient [N, D] of its first output (raw density) with respect to its
    input [N, D], by hand: the ReLU masks of the forward pass, then the weights back to front."""
    masks = []
    for layer in decoder:
        h = layer(h) if isinstance(layer, nn.Linear) else torch.relu(h)
        if isinstance(layer, nn.ReLU):
            masks.append(h > 0)  # [N, H]
    linears = [layer for layer in decoder if isinstance(layer, nn.Linear)]
    grad = linears[-1].weight[0].expand(h.shape[0], -1)  # [N, H]
    for layer, mask in zip(reversed(linears[:-1]), reversed(masks)):
        grad = (grad * mask) @ layer.weight
    return h, grad


class Background(nn.Module):
    """Colour of a ray that leaves the scene: DreamFusion's learned MLP of direction, or a solid colour."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.net = mlp(3, 16, 1, 3) if mode == "learned" else None

    def forward(self, dirs: Tensor, solid: Tensor | None = None) -> Tensor:
        # dirs [N, 3] → [N, 3]; `solid` [3] overrides (random backgrounds, eval on white)
        if solid is not None:
            return solid.expand_as(dirs)
        if self.net is not None:
            return torch.sigmoid(self.net(dirs))
        value = 1.0 if self.mode in ("white", "random") else 0.0
        return torch.full_like(dirs, value)


def parameter_count(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def expected_parameter_count(cfg: NerfConfig) -> int:
    """Closed form of the dense field's size: grid voxels × features, plus the decoder's weights and biases."""
    grid = sum(cfg.grid_features * r**3 for r in level_resolutions(cfg))
    dims = [cfg.grid_features * cfg.grid_levels] + [cfg.mlp_width] * cfg.mlp_depth + [4]
    decoder = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    return grid + decoder


def safe_normalize(v: Tensor, eps: float = 1e-8) -> Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(eps)


def finite_difference_normals(density_fn, x: Tensor, sigma: Tensor, h: float) -> Tensor:
    """Outward normals −∇σ/|∇σ| by forward differences from σ(x) already computed: 3 extra reads, one batch.

    Any field; a dense grid's exact gradient is cheaper (`NeRFField.with_gradient`, `speed.analytic_normals`).
    """
    # x [N, 3], sigma [N] → [N, 3]
    offsets = torch.eye(3, device=x.device, dtype=x.dtype) * h  # [3, 3]
    shifted = density_fn((x[None] + offsets[:, None]).reshape(-1, 3)).view(3, -1)  # [3, N]
    grad = (shifted - sigma[None]).t() / h  # [N, 3]
    return safe_normalize(-grad)


def finest_voxel(cfg: NerfConfig) -> float:
    return 2.0 / cfg.grid_max_resolution
