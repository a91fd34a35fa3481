"""The toy world's mesh scores on its own true shapes, where the answers are known: the surface at the export
threshold lies a computable distance outside the true one, and only the torus has a hole."""

from __future__ import annotations

import math

import pytest

from dreamfusion.config.schema import ExportConfig
from dreamfusion.export.geometry import mesh_chamfer, topology
from dreamfusion.export.mesh import extract_mesh
from dreamfusion.toyworld import world
from dreamfusion.toyworld.mesh_truth import true_surface


@pytest.mark.parametrize("shape", ["sphere", "torus"])
def test_the_true_density_scores_its_known_offset(shape):
    """σ = sigmoid(−sdf/β)/β equals τ at sdf = −β·logit(τβ): that far outside the true surface, all round."""
    field = world.ShapeField(shape, (1.0, 1.0, 1.0))
    tau = ExportConfig().threshold
    offset = -field.beta * math.log(tau * field.beta / (1 - tau * field.beta))
    mesh = extract_mesh(field, 96, tau)
    assert abs(mesh_chamfer(mesh, true_surface(shape)) - offset) < 0.004


def test_only_the_torus_has_a_hole():
    assert {s: topology(true_surface(s)).genus for s in world.SHAPES} == {s: int(s == "torus") for s in world.SHAPES}
