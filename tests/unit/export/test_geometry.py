"""Chamfer distance and genus against answers known in closed form."""

from __future__ import annotations

import numpy as np
import trimesh

from dreamfusion.export.geometry import chamfer, mesh_chamfer, topology


def test_chamfer_of_point_sets_is_the_mean_nearest_distance_both_ways():
    a = np.array([[0.0, 0, 0], [1, 0, 0]])
    b = np.array([[0.0, 3, 4]])
    # a → b: 5 and √(1 + 9 + 16) = √26; b → a: 5
    assert np.isclose(chamfer(a, b), 0.5 * ((5 + np.sqrt(26)) / 2 + 5))
    assert chamfer(a, a) == 0.0
    assert chamfer(a, np.zeros((0, 3))) == float("inf")


def test_chamfer_of_concentric_spheres_is_their_gap():
    inner, outer = trimesh.creation.icosphere(6, 0.55), trimesh.creation.icosphere(6, 0.60)
    assert abs(mesh_chamfer(inner, outer) - 0.05) < 1e-3


def test_genus_from_the_euler_characteristic():
    sphere = topology(trimesh.creation.icosphere(2))
    torus = topology(trimesh.creation.torus(0.5, 0.2))
    assert (sphere.genus, sphere.euler, sphere.watertight) == (0, 2, True)
    assert (torus.genus, torus.euler, torus.watertight) == (1, 0, True)


def test_pieces_count_and_the_largest_one_sets_the_genus():
    floater = trimesh.creation.icosphere(1, 0.05)
    floater.apply_translation([0.9, 0, 0])
    both = trimesh.util.concatenate([trimesh.creation.torus(0.5, 0.2), floater])
    found = topology(both)
    assert (found.components, found.genus) == (2, 1)


def test_a_surface_with_a_hole_is_open_and_still_genus_zero():
    sphere = trimesh.creation.icosphere(3)
    opened = trimesh.Trimesh(sphere.vertices, sphere.faces[1:], process=False)  # χ = 1, one boundary loop
    found = topology(opened)
    assert (found.watertight, found.euler, found.genus) == (False, 1, 0)
