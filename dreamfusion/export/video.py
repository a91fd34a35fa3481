"""Frames → an mp4 a browser, a slide or a paper's supplement plays: H.264 in yuv420p, encoded by the ffmpeg that
imageio-ffmpeg ships (the machines have no ffmpeg of their own), under a size cap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.images import to_uint8

#: x264's constant-rate factor of the first try (23 is its default), and how far a file over its cap steps it up.
CRF = 20
CRF_STEP = 6
MAX_CRF = 51
#: Small renders are enlarged to at least this many pixels a side: a 32 px turntable is visible in a browser.
MIN_SIDE = 192


def write_mp4(
    frames: Tensor, path: Path, fps: int = 24, max_bytes: int | None = None, min_side: int = MIN_SIDE
) -> Path:
    """[N, 3, H, W] in [0, 1] → an H.264 mp4 of N frames (H and W even), enlarged by an integer factor (nearest
    neighbour, as the GIFs and render grids are) to at least `min_side`. Over `max_bytes` it is encoded again at a
    lower quality (a higher CRF) until it fits; written to a temporary name and renamed."""
    factor = -(-min_side // min(frames.shape[-2:]))
    if factor > 1:
        frames = F.interpolate(frames, scale_factor=factor, mode="nearest")
    pixels = to_uint8(frames)  # [N, H, W, 3]
    if pixels.shape[1] % 2 or pixels.shape[2] % 2:
        raise ValueError(f"H.264 in yuv420p needs an even frame size, got {pixels.shape[2]}x{pixels.shape[1]}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    crf = CRF
    while True:
        _encode(pixels, tmp, fps, crf)
        if max_bytes is None or tmp.stat().st_size <= max_bytes or crf >= MAX_CRF:
            break
        crf = min(MAX_CRF, crf + CRF_STEP)
    tmp.replace(path)
    return path


def _encode(pixels: np.ndarray, path: Path, fps: int, crf: int) -> None:
    import imageio_ffmpeg

    n, h, w, _ = pixels.shape
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="libx264",
        pix_fmt_out="yuv420p",
        quality=None,
        macro_block_size=2,
        output_params=["-crf", str(crf), "-preset", "medium", "-movflags", "+faststart"],
        ffmpeg_log_level="error",
    )
    writer.send(None)  # start the encoder
    for frame in pixels:
        writer.send(np.ascontiguousarray(frame))
    writer.close()


def count_frames(path: Path) -> int:
    """Frames in a video file, by decoding it (the container's header may round)."""
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)
