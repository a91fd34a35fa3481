"""`df-sweep export RUN_ID|TRIAL_DIR --out DIR`: a logged trial made into what a researcher takes away: a mesh for
Blender, an mp4 turntable for a paper, and high-resolution renders in every shading mode, from the trial's field
weights (an MLflow run's `final/field.pt` from any store, or a local trial directory or checkpoint)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamfusion import images
from dreamfusion.errors import ConfigError
from dreamfusion.export.geometry import topology
from dreamfusion.export.mesh import MESH_FORMATS, write_mesh
from dreamfusion.export.video import write_mp4
from dreamfusion.export.views import MODES, Scene, cams_slice
from dreamfusion.export.weights import find_weights, load_weights
from dreamfusion.outdir import check_fresh, fresh_out
from dreamfusion.priors.base import resolve_device
from dreamfusion.tracking.artifacts import resolve_source
from dreamfusion.tracking.store import resolve_uri

Echo = Callable[[str], None]


@dataclass(frozen=True)
class ExportRequest:
    mesh: str | None = "glb"
    """Mesh format (glb, obj, ply), or None for no mesh."""
    video: str | None = "mp4"
    """Video format (mp4), or None for no video."""
    resolution: int = 256
    """Side in pixels of the renders and the video's frames."""
    frames: int = 48
    """Frames of the turntable (one full turn)."""
    views: int = 4
    """Views on the ring of the re-renders, each in every mode."""
    mesh_resolution: int = 256
    """Marching-cubes grid points per side."""
    threshold: float | None = None
    """Surface density; None: the trial's own `export.threshold`."""
    samples: int = 64
    """Samples per ray of the renders."""
    fps: int = 24
    device: str = "auto"


#: Upper bounds of the export's sizes: far above any use, and below what would exhaust a machine's memory or hang
#: it for hours (a render holds resolution² × samples points at once).
MAX_RESOLUTION, MAX_FRAMES, MAX_VIEWS, MAX_SAMPLES = 4096, 1000, 64, 1024


def export_trial(
    source: str, out: Path, request: ExportRequest, tracking_uri: str | None = None, echo: Echo = print
) -> dict[str, Path]:
    """Write `out/mesh.<format>`, `out/turntable.mp4`, `out/renders/<mode>_<view>.png` and `out/views.png` (a row per
    mode) from the trial `source` names; returns what was written."""
    _check(request)
    out = Path(out)
    check_fresh(out)  # before any download: a refused --out costs nothing
    with tempfile.TemporaryDirectory(prefix="df-export-") as fetched, fresh_out(out):
        weights_path = find_weights(resolve_source(source, resolve_uri(tracking_uri), Path(fetched), "SOURCE"))
        weights = load_weights(weights_path)
        scene = Scene(*weights.build(resolve_device(request.device)), weights.config)
        where = weights_path if not weights_path.is_relative_to(fetched) else "fetched from MLflow"
        echo(f"{source}: {weights.config.prompt!r}, step {weights.step}, nerf {weights.config.nerf.size} ({where})")
        written: dict[str, Path] = {}
        if request.mesh:
            written["mesh"] = _mesh(scene, out, request, echo)
        if request.video:
            written["video"] = _video(scene, out, request, echo)
        written.update(_renders(scene, out, request, echo))
        return written


def _check(r: ExportRequest) -> None:
    if r.mesh is not None and r.mesh not in MESH_FORMATS:
        raise ConfigError(f"--mesh: expected one of {', '.join(MESH_FORMATS)}, got {r.mesh!r}")
    if r.video is not None and r.video != "mp4":
        raise ConfigError(f"--video: expected mp4, got {r.video!r}")
    for key, value, low, high in (
        ("--resolution", r.resolution, 16, MAX_RESOLUTION),
        ("--frames", r.frames, 2, MAX_FRAMES),
        ("--views", r.views, 1, MAX_VIEWS),
        ("--samples", r.samples, 1, MAX_SAMPLES),
    ):
        if not low <= value <= high:
            raise ConfigError(f"{key}: expected {low} to {high}, got {value}")
    if r.resolution % 2:
        raise ConfigError(f"--resolution: expected an even number of pixels (H.264 needs it), got {r.resolution}")
    if not 16 <= r.mesh_resolution <= 1024:
        raise ConfigError(f"--mesh-resolution: expected 16 to 1024 grid points per side, got {r.mesh_resolution}")
    if r.threshold is not None and r.threshold <= 0:
        raise ConfigError(f"--threshold: expected a density above 0, got {r.threshold}")


def _mesh(scene: Scene, out: Path, r: ExportRequest, echo: Echo) -> Path:
    started = time.perf_counter()
    threshold = r.threshold if r.threshold is not None else scene.cfg.export.threshold
    path, mesh = write_mesh(scene.field, out / f"mesh.{r.mesh}", r.mesh_resolution, threshold, device=scene.device)
    shape = topology(mesh)
    closed = "watertight" if shape.watertight else "not watertight"
    echo(
        f"mesh: {path} ({len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces; {shape.components} piece(s), "
        f"{closed}, genus {shape.genus}; σ = {threshold:g} on {r.mesh_resolution}³) "
        f"[{time.perf_counter() - started:.0f}s]"
    )
    return path


def _video(scene: Scene, out: Path, r: ExportRequest, echo: Echo) -> Path:
    started = time.perf_counter()
    cams = scene.ring(r.frames)
    frames = []
    for start in range(0, r.frames, 10):  # progress every ten frames: a frame at 512 px takes seconds on a CPU
        frames.append(scene.render(cams_slice(cams, start, start + 10), "shaded", r.resolution, r.samples))
        echo(f"turntable: {min(start + 10, r.frames)}/{r.frames} frames [{time.perf_counter() - started:.0f}s]")
    path = write_mp4(torch.cat(frames), out / "turntable.mp4", r.fps, min_side=r.resolution)
    echo(f"video: {path} ({r.frames} frames, {r.resolution}², {path.stat().st_size / 1e6:.1f} MB)")
    return path


def _renders(scene: Scene, out: Path, r: ExportRequest, echo: Echo) -> dict[str, Path]:
    started = time.perf_counter()
    cams = scene.ring(r.views, offset=45.0)  # between the eval views: a three-quarter view first
    rows = []
    (out / "renders").mkdir(parents=True, exist_ok=True)
    for mode in MODES:
        rendered = scene.render(cams, mode, r.resolution, r.samples)  # [V, 3, H, W]
        for i, image in enumerate(rendered):
            images.grid(image[None], 1, pad=0).save(out / "renders" / f"{mode}_{i}.png")
        rows.append(rendered)
        echo(f"renders: {mode} [{time.perf_counter() - started:.0f}s]")
    sheet = out / "views.png"
    images.grid(torch.cat(rows), r.views).save(sheet)
    echo(f"renders: {out / 'renders'} ({len(MODES)} modes × {r.views} views at {r.resolution}²), sheet {sheet}")
    return {"renders": out / "renders", "views": sheet}
