"""The evaluator interface: what a metric producer is given at an evaluation, and what it declares about its
metrics (their names and which direction is better), so specs, trackers and reports can check names up front."""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.nerf.render import Lighting, RenderOutput
from dreamfusion.scoring.metrics import Scorer
from dreamfusion.scoring.none import NO_SCORER


@dataclass(frozen=True)
class Metric:
    mode: Literal["max", "min"]
    """Whether larger or smaller is better: the one statement of it, recorded on every run that logs the metric, so
    that specs, retention and reports take it from here. A reading (`ranked=False`) has no better side, so its mode
    is a placeholder that is never recorded."""
    doc: str
    """What it measures, in one line."""
    final_only: bool = False
    """Computed once at the end of the trial rather than at every evaluation."""
    scored: bool = False
    """Computed by the trial's scorer (CLIP), so absent with `scoring.model: none`."""
    ranked: bool = True
    """A score a sweep may rank trials by; False for a reading that is not better one way (an index, an angle)."""
    levels: tuple[str, ...] = ()
    """For an index into a list, what its values 0, 1, … name: recorded on the run, so that a report counts the
    categories without knowing the list."""


@dataclass
class EvalViews:
    """The eval ring of one evaluation, rendered once and shared by every evaluator."""

    cameras: Cameras  # V cameras on a ring
    colour: RenderOutput  # lit colour renders, [V, 3, H, W]
    geometry: RenderOutput  # textureless renders, [V, 3, H, W]
    lights: Tensor  # [V, 3] the point light of each view
    render: Callable[[Cameras, Lighting, bool], RenderOutput]
    """Renders the trial's field from other cameras or in another shading (cameras, lighting, need_normals)."""
    resolution: int
    mesh: Callable[[], Any]
    """The field's surface as a `trimesh.Trimesh` (marching cubes at `export.threshold` on an `export.mesh_resolution`
    grid), extracted on first use and shared with the trial's exported mesh."""


class Evaluator(registry.Component, abc.ABC):
    kind = "evaluator"
    metrics: ClassVar[dict[str, Metric]]

    def __init__(self, cfg: TrialConfig, scorer: Scorer) -> None:
        self.cfg, self.scorer = cfg, scorer
        self.options = cfg.eval.options_for(type(self))

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        """Whether this evaluator can score the trial (the CLIP metrics need a scorer, the toy world's ground
        truth a toy-world prompt)."""
        return cfg.scoring.model != NO_SCORER or not all(m.scored for m in cls.metrics.values())

    @abc.abstractmethod
    def evaluate(self, views: EvalViews) -> dict[str, float]:
        """The metrics of one evaluation."""

    def final(self, views: EvalViews) -> dict[str, float]:
        """Metrics computed once, after the last evaluation (the `final_only` ones)."""
        return {}


def make_evaluators(cfg: TrialConfig, scorer: Scorer) -> list[Evaluator]:
    """The evaluators `eval.evaluators` names, or every registered one that applies to the trial."""
    return [cls(cfg, scorer) for cls in make_evaluator_classes(cfg)]


def make_evaluator_classes(cfg: TrialConfig) -> list[type[Evaluator]]:
    names = cfg.eval.evaluators
    if names is not None:
        return [registry.find("evaluator", n) for n in names]
    return [c for c in registry.components("evaluator") if c.applies(cfg)]


def declared_metrics(evaluators: Iterable[Evaluator | type[Evaluator]]) -> dict[str, Metric]:
    """Every metric these evaluators log, as they declare it."""
    return {name: metric for e in evaluators for name, metric in e.metrics.items()}


def all_metrics() -> dict[str, Metric]:
    """Every metric any registered evaluator can log."""
    return declared_metrics(registry.components("evaluator"))


def metric_owner(metric: str) -> type[Evaluator] | None:
    return next((c for c in registry.components("evaluator") if metric in c.metrics), None)
