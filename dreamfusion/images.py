"""PNG grids and GIF turntables from image tensors: what people look at instead of reading numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch import Tensor


def to_uint8(images: Tensor) -> np.ndarray:
    """[N, 3, H, W] in [0, 1] → [N, H, W, 3] uint8."""
    return (images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def grid(images: Tensor, ncol: int, pad: int = 2) -> Image.Image:
    """Tile [N, 3, H, W] row-major into `ncol` columns on a white canvas."""
    arr = to_uint8(images)
    n, h, w, _ = arr.shape
    nrow = -(-n // ncol)
    canvas = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(arr):
        r, c = divmod(i, ncol)
        canvas[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return Image.fromarray(canvas)


def upscale(image: Image.Image, min_side: int = 256) -> Image.Image:
    """Nearest-neighbour enlarge small renders so a 32 px view is visible in a browser or the MLflow UI."""
    factor = max(1, -(-min_side // min(image.size)))
    return (
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST) if factor > 1 else image
    )


def save_grid(images: Tensor, path: Path, ncol: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    upscale(grid(images, ncol)).save(path)
    return path


def save_gif(frames: Tensor, path: Path, fps: int = 12) -> Path:
    """[N, 3, H, W] frames → looping GIF."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [upscale(Image.fromarray(a), 192) for a in to_uint8(frames)]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
    return path
