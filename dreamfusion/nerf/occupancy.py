"""A coarse occupancy grid: skip the field wherever density is negligible (the idea behind nerfacc, in pure torch).

Most samples of a ray lie in empty space. A [R³] boolean grid of cells whose density may matter, refreshed from
the field every few steps and dilated by one cell so the object can grow, lets the renderer evaluate the field
only on samples that can deposit weight.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class OccupancyGrid(nn.Module):
    def __init__(self, resolution: int = 32, threshold: float = 0.05) -> None:
        super().__init__()
        self.resolution, self.threshold = resolution, threshold
        self.register_buffer("occupied", torch.ones(resolution, resolution, resolution, dtype=torch.bool))

    def cell_centres(self) -> Tensor:
        """[R³, 3] in [-1, 1], indexed (x, y, z) like `occupied`."""
        c = (torch.arange(self.resolution, device=self.occupied.device) + 0.5) / self.resolution * 2 - 1
        return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), -1).view(-1, 3)

    @torch.no_grad()
    def update(self, density: Callable[[Tensor], Tensor]) -> None:
        """Mark cells whose centre density exceeds the threshold, dilated by one cell in every direction."""
        r = self.resolution
        sigma = density(self.cell_centres()).view(1, 1, r, r, r)
        dense = (sigma > self.threshold).float()
        self.occupied = F.max_pool3d(dense, kernel_size=3, stride=1, padding=1).view(r, r, r) > 0

    def query(self, points: Tensor) -> Tensor:
        """[N, 3] → [N] bool: may the field be non-negligible here?"""
        idx = ((points + 1) / 2 * self.resolution).long().clamp(0, self.resolution - 1)  # [N, 3]
        return self.occupied[idx[:, 0], idx[:, 1], idx[:, 2]]

    def fraction(self) -> float:
        return float(self.occupied.float().mean())
