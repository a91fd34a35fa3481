"""Marching cubes on density fields, checked on the toy world's true shapes (known surfaces and topology) and on
fields whose answer is exact: where the surface lies, its colours, its files, its size cap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh

from dreamfusion.config.schema import ExportConfig
from dreamfusion.export.geometry import topology
from dreamfusion.export.mesh import extract_mesh, mesh_bytes, write_mesh
from dreamfusion.toyworld import world

torch.set_num_threads(1)
THRESHOLD = ExportConfig().threshold
TRUE_GENUS = {"torus": 1}  # every other shape of the world is a topological sphere


@pytest.mark.parametrize("resolution", [32, 128])
@pytest.mark.parametrize("shape", list(world.SHAPES))
def test_default_threshold_meshes_each_true_shape_whole(shape, resolution):
    """The documented choice of `export.threshold`: on every true shape, one watertight piece of the right genus."""
    mesh = extract_mesh(world.ShapeField(shape, (0.5, 0.5, 0.5)), resolution, THRESHOLD)
    found = topology(mesh)
    assert (found.components, found.watertight, found.genus) == (1, True, TRUE_GENUS.get(shape, 0))
    assert mesh.is_winding_consistent and mesh.volume > 0  # faces wound outwards


def test_surface_lies_on_the_level_set_with_the_albedo_as_colour():
    """VolSDF density σ = sigmoid(−sdf/β)/β equals τ where sdf = −β·logit(τβ): for the sphere, at that radius."""
    field = world.ShapeField("sphere", (0.2, 0.4, 0.6))
    beta = field.beta
    p = THRESHOLD * beta
    radius = 0.55 - beta * math.log(p / (1 - p))
    mesh = extract_mesh(field, 96, THRESHOLD)
    error = np.abs(np.linalg.norm(mesh.vertices, axis=1) - radius)
    # vertices are interpolated linearly along grid edges (2/95 long) in a field that is not linear
    assert error.mean() < 1e-3 and error.max() < 0.15 * 2 / 95
    expected = (np.array([0.2, 0.4, 0.6]) * 255 + 0.5).astype(np.uint8)
    assert (mesh.visual.vertex_colors[:, :3] == expected).all()


def test_an_empty_field_gives_an_empty_mesh():
    mesh = extract_mesh(lambda x: (torch.zeros(len(x)), torch.zeros(len(x), 3)), 16, THRESHOLD)
    assert len(mesh.faces) == 0 and topology(mesh).components == 0


@pytest.mark.parametrize("fmt", ["glb", "obj", "ply"])
def test_mesh_files_load_back_with_their_faces_and_colours(fmt, tmp_path):
    field = world.ShapeField("torus", (1.0, 0.5, 0.0))
    path, mesh = write_mesh(field, tmp_path / f"mesh.{fmt}", 40, THRESHOLD)
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces) > 0
    assert topology(trimesh.Trimesh(loaded.vertices, loaded.faces)).genus == 1
    visual = loaded.visual if loaded.visual.kind == "vertex" else loaded.visual.to_color()
    colours = np.asarray(visual.vertex_colors)[:, :3]
    assert (colours == [255, 128, 0]).all()


def test_a_mesh_over_its_size_cap_is_made_again_coarser(tmp_path):
    field = world.ShapeField("sphere", (1.0, 1.0, 1.0))
    full = len(mesh_bytes(extract_mesh(field, 64, THRESHOLD), "glb"))
    cap = full // 3
    path, mesh = write_mesh(field, tmp_path / "mesh.glb", 64, THRESHOLD, max_bytes=cap)
    assert path.stat().st_size <= cap and len(mesh.faces) > 0
    assert topology(mesh).watertight


def test_a_fresh_field_meshes_as_the_blob_its_renders_show():
    """The documented reason for τ: the initial blob σ = softplus(10(1 − 2r)) is half opaque head-on at
    r = 0.5 − √(ln 2/10) ≈ 0.237, and its mesh at τ sits at softplus⁻¹(τ) = 10(1 − 2r), r ≈ 0.25 (give or take the
    decoder's random initial output, which adds to the blob)."""
    from dreamfusion.config.schema import NerfConfig
    from dreamfusion.nerf.field import NeRFField

    torch.manual_seed(0)
    field = NeRFField(NerfConfig())
    mesh = extract_mesh(field, 64, THRESHOLD)
    expected = (1 - math.log(math.expm1(THRESHOLD)) / 10) / 2
    radius = np.linalg.norm(mesh.vertices, axis=1)
    assert abs(radius.mean() - expected) < 0.02 and abs(expected - (0.5 - math.sqrt(math.log(2) / 10))) < 0.015
    assert topology(mesh) == topology(trimesh.creation.icosphere(2))
