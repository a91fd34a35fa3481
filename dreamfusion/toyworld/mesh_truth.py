"""Exact 3D scores of a toy-world trial's mesh against the true shape: how far its surface lies from the true one
(Chamfer distance), and whether it has the true shape's topology (genus from the Euler characteristic, pieces,
closedness). "The torus has its hole" and "the cube has no horns" become numbers; the silhouette IoU of
`ground_truth.py` cannot see either (a torus seen from the eval ring's 15° has the silhouette of a disc).

The trial's mesh is the one it exports (marching cubes at `export.threshold` on an `export.mesh_resolution` grid);
the true surface is the shape's signed distance function's zero set, meshed once per shape on a finer grid."""

from __future__ import annotations

import functools
from typing import Any

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import Evaluator, EvalViews, Metric
from dreamfusion.export.geometry import mesh_chamfer, topology
from dreamfusion.export.mesh import density_volume, surface
from dreamfusion.toyworld import world

#: Grid points per side of the true surfaces: their own error (a few thousandths, most at the cube's edges) stays well
#: below the distances scored, and a shape costs a second or two the first time a worker scores it.
TRUTH_RESOLUTION = 96


@registry.register
class MeshTruth(Evaluator):
    name = "mesh_truth"
    summary = "toy-world prompts only: the final mesh's Chamfer distance to the true surface and its genus against it"
    metrics = {
        "gt_chamfer": Metric("min", "½(mean distance mesh → true surface + true surface → mesh), scene units", True),
        "gt_genus_error": Metric(
            "min", "|genus of the mesh's largest piece − the true shape's| (torus 1, others 0)", True
        ),
        "mesh_genus": Metric("min", "genus of the mesh's largest piece: holes through it (a torus has 1)", True),
        "mesh_components": Metric("min", "pieces of the final mesh: 1 is the object alone, more are floaters", True),
        "mesh_watertight": Metric("max", "1 if the final mesh is closed (every edge has two faces), else 0", True),
    }

    @classmethod
    def applies(cls, cfg: TrialConfig) -> bool:
        return world.parse_prompt(cfg.prompt) is not None

    def evaluate(self, views: EvalViews) -> dict[str, float]:
        return {}  # once, at the end: a mesh per evaluation would cost more than the scores tell

    def final(self, views: EvalViews) -> dict[str, float]:
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None:
            return {}
        mesh, truth = views.mesh(), true_surface(caption.shape)
        found = topology(mesh)
        pieces = {"mesh_components": float(found.components), "mesh_watertight": float(found.watertight)}
        if not found.components:  # no surface: no distance to it and no genus (left out, not made up)
            return pieces
        return {
            "gt_chamfer": mesh_chamfer(mesh, truth),
            "gt_genus_error": float(abs(found.genus - topology(truth).genus)),
            "mesh_genus": float(found.genus),
            **pieces,
        }


@functools.lru_cache(maxsize=len(world.SHAPES))
def true_surface(shape: str) -> Any:
    """The zero set of the shape's signed distance, as a mesh (cached: every trial of a shape scores against it)."""
    sdf = world.SHAPES[shape]
    volume = density_volume(lambda x: (-sdf(x), x), TRUTH_RESOLUTION)  # inside positive, like a density
    return surface(volume, 0.0, 2.0 / (TRUTH_RESOLUTION - 1))
