"""Evaluation of a trial: the eval ring rendered once, scored by every evaluator; the final metrics, renders,
turntables, weights and mesh. Eval renders are deterministic (no jitter, fixed lights), so the same state always
scores the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from dreamfusion import images
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import EvalViews, make_evaluators
from dreamfusion.export.mesh import extract_mesh, write_mesh
from dreamfusion.export.video import write_mp4
from dreamfusion.export.views import Scene, lights_above
from dreamfusion.export.weights import WEIGHTS_FILE
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.nerf.render import Lighting, RenderOutput
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.trial.state import TrialState

MB = 1 << 20


class Evaluation:
    def __init__(self, cfg: TrialConfig, scorer: Scorer, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.evaluators = make_evaluators(cfg, scorer)
        self.last: EvalViews | None = None
        self._mesh: tuple[int, Any] | None = None  # (step, mesh) of the last extraction

    @torch.no_grad()
    def render_views(self, state: TrialState, cams: Cameras, shading: str) -> RenderOutput:
        """Deterministic renders (no jitter) lit from above the camera, on the config's background."""
        light = Lighting(shading, lights_above(cams), self.cfg.render.ambient, self.cfg.render.diffuse)
        bg = torch.ones(3, device=self.device) if self.cfg.render.background == "random" else None
        return state.render(cams, light, None, bg, need_normals=True)

    def __call__(self, state: TrialState) -> tuple[dict[str, float], torch.Tensor]:
        """Scores of the eval ring and the [2V, 3, H, W] renders (lit colour row, textureless row)."""
        cams = scene(state).ring(self.cfg.eval.views)
        colour = self.render_views(state, cams, "lambertian")
        geometry = self.render_views(state, cams, "textureless")

        def render_field(c: Cameras, lighting: Lighting, need_normals: bool) -> RenderOutput:
            return state.render(c, lighting, None, None, need_normals)

        self.last = EvalViews(
            cams,
            colour,
            geometry,
            lights_above(cams),
            render_field,
            self.cfg.render.resolution,
            lambda: self.mesh(state),
        )
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            metrics.update(evaluator.evaluate(self.last))
        return metrics, torch.cat([colour.rgb, geometry.rgb])

    def mesh(self, state: TrialState) -> Any:
        """The field's surface at this step, extracted once however many evaluators and exports ask for it."""
        if self._mesh is None or self._mesh[0] != state.step:
            e = self.cfg.export
            self._mesh = (state.step, extract_mesh(state.field, e.mesh_resolution, e.threshold, self.device))
        return self._mesh[1]

    def final(self) -> dict[str, float]:
        """The evaluators' once-per-trial metrics, from the last evaluation's views."""
        assert self.last is not None, "final() follows an evaluation"
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            metrics.update(evaluator.final(self.last))
        return metrics

    def write_final(
        self, state: TrialState, out: Path, metrics: dict[str, float], render_path: Path
    ) -> dict[str, Path]:
        """`final/views.png` (colour and geometry rows), `final/turntable.gif`, `final/metrics.json`, and what
        `export` asks for: `final/field.pt`, `final/mesh.<format>`, `final/turntable.mp4`."""
        final = out / "final"
        final.mkdir(exist_ok=True)
        views = final / "views.png"
        shutil.copyfile(render_path, views)
        turn = scene(state)
        frames = turn.render(turn.ring(self.cfg.eval.turntable_frames), "shaded")  # [N, 3, H, W]
        gif = images.save_gif(frames, final / "turntable.gif")
        (final / "metrics.json").write_text(json.dumps(metrics, indent=2))
        written = {"views": views, "turntable": gif, "metrics": final / "metrics.json", "config": out / "config.yaml"}
        return {**written, **self._exports(state, final, frames)}

    def _exports(self, state: TrialState, final: Path, gif_frames: torch.Tensor) -> dict[str, Path]:
        cfg, e, written = self.cfg, self.cfg.export, {}
        if e.video:
            n, res = e.video_frames or cfg.eval.turntable_frames, e.video_resolution or cfg.render.resolution
            same = (n, res) == (cfg.eval.turntable_frames, cfg.render.resolution)
            turn = scene(state)
            frames = gif_frames if same else turn.render(turn.ring(n), "shaded", res)
            written["video"] = write_mp4(frames, final / "turntable.mp4", e.video_fps, int(e.video_max_mb * MB))
        if e.weights:
            written["weights"] = state.weights().save(final / WEIGHTS_FILE)
        if e.mesh:
            path = final / f"mesh.{e.mesh_format}"
            written["mesh"], _ = write_mesh(
                state.field,
                path,
                e.mesh_resolution,
                e.threshold,
                int(e.mesh_max_mb * MB),
                self.device,
                self.mesh(state),
            )
        return written


def scene(state: TrialState) -> Scene:
    """The trial's field as the export layer renders it."""
    return Scene(state.field, state.background, state.occupancy, state.cfg)
