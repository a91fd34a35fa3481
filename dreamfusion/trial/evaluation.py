"""Evaluation of a trial: the eval ring rendered once, scored by every evaluator; the final metrics, renders and
turntable. Eval renders are deterministic (no jitter, fixed lights), so the same state always scores the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from dreamfusion import images
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import EvalViews, make_evaluators
from dreamfusion.nerf.cameras import Cameras, ring_cameras
from dreamfusion.nerf.render import Lighting, RenderOutput
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.trial.state import TrialState

EVAL_ELEVATION = 15.0


class Evaluation:
    def __init__(self, cfg: TrialConfig, scorer: Scorer, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.evaluators = make_evaluators(cfg, scorer)
        self.last: EvalViews | None = None

    def cameras(self, n: int, offset: float = 0.0) -> Cameras:
        c = self.cfg.camera
        return ring_cameras(n, EVAL_ELEVATION, sum(c.distance) / 2, c.fov, offset).to(self.device)

    @torch.no_grad()
    def render_views(self, state: TrialState, cams: Cameras, shading: str) -> RenderOutput:
        """Deterministic renders (no jitter) lit from above the camera, on the config's background."""
        return state.render(cams, self.lighting(cams, shading), None, self.background(), need_normals=True)

    def lighting(self, cams: Cameras, shading: str) -> Lighting:
        return Lighting(shading, eval_lights(cams), self.cfg.render.ambient, self.cfg.render.diffuse)

    def background(self) -> torch.Tensor | None:
        return torch.ones(3, device=self.device) if self.cfg.render.background == "random" else None

    @torch.no_grad()
    def ring(self, state: TrialState, cams: Cameras) -> tuple[RenderOutput, RenderOutput, RenderOutput | None]:
        """Colour (lit) and geometry (textureless) views of the ring, and with `speed.shared_eval_pass` its albedo
        views too, from the same pass through the field. (The albedo views are on the eval background, which for
        every background mode has the same colour as the field's own background.)"""
        if not self.cfg.speed.shared_eval_pass:
            return self.render_views(state, cams, "lambertian"), self.render_views(state, cams, "textureless"), None
        lights = [self.lighting(cams, s) for s in ("lambertian", "textureless", "albedo")]
        colour, geometry, albedo = state.render_shadings(cams, lights, self.background())
        return colour, geometry, albedo

    def __call__(self, state: TrialState) -> tuple[dict[str, float], torch.Tensor]:
        """Scores of the eval ring and the [2V, 3, H, W] renders (lit colour row, textureless row)."""
        cams = self.cameras(self.cfg.eval.views)
        colour, geometry, albedo = self.ring(state, cams)

        def render_field(c: Cameras, lighting: Lighting, need_normals: bool) -> RenderOutput:
            if albedo is not None and c is cams and lighting.shading == "albedo":
                return albedo  # the pixels `state.render` gives, already rendered in the shared pass
            return state.render(c, lighting, None, None, need_normals)

        self.last = EvalViews(cams, colour, geometry, eval_lights(cams), render_field, self.cfg.render.resolution)
        metrics: dict[str, float] = {}
        for evaluator in self.evaluators:
            metrics.update(evaluator.evaluate(self.last))
        return metrics, torch.cat([colour.rgb, geometry.rgb])

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
        """`final/views.png` (colour and geometry rows), `final/turntable.gif`, `final/metrics.json`."""
        final = out / "final"
        final.mkdir(exist_ok=True)
        views = final / "views.png"
        shutil.copyfile(render_path, views)
        frames = self.render_views(state, self.cameras(self.cfg.eval.turntable_frames), "lambertian").rgb
        gif = images.save_gif(frames, final / "turntable.gif")
        (final / "metrics.json").write_text(json.dumps(metrics, indent=2))
        return {"views": views, "turntable": gif, "metrics": final / "metrics.json", "config": out / "config.yaml"}


def eval_lights(cams: Cameras) -> torch.Tensor:
    """[B, 3] fixed point lights behind and above each eval camera, so eval renders are deterministic."""
    return cams.position * 1.5 + torch.tensor([0.0, 0.0, 1.0], device=cams.c2w.device)
