"""What a mesh's shape is, in numbers: its topology (components, watertightness, genus from the Euler characteristic)
and its Chamfer distance to another surface. The toy world scores trials with them against its true shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Points sampled on each surface for the Chamfer distance: QUERY_POINTS whose distance is measured, to the nearest of
#: REFERENCE_POINTS on the other surface. The dense side keeps the error of measuring to points instead of the surface
#: under 0.003 for the toy world's shapes (about 1 m per 300 m of object); the unit tests check it against
#: concentric spheres.
QUERY_POINTS = 10_000
REFERENCE_POINTS = 100_000


@dataclass(frozen=True)
class Topology:
    components: int  # connected pieces (floaters count)
    watertight: bool  # every edge shared by exactly two faces, consistently wound
    genus: int  # handles of the largest component: 0 for a sphere or a cube, 1 for a torus
    euler: int  # V − E + F of the largest component


def topology(mesh: Any) -> Topology:
    """Components of the whole mesh, and the genus of its largest one from χ = V − E + F = 2 − 2g − b, b its boundary
    loops (0 on a closed surface). A mesh with no faces has no components and genus 0."""
    if len(mesh.faces) == 0:
        return Topology(0, False, 0, 0)
    import trimesh.graph

    # pieces by shared edges (trimesh's own `split` closes small holes of the pieces it returns)
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    sizes = np.bincount(labels)
    main = mesh.submesh([np.flatnonzero(labels == sizes.argmax())], append=True)
    euler = int(main.euler_number)
    genus = (2 - euler - boundary_loops(main)) // 2
    return Topology(len(sizes), bool(mesh.is_watertight), int(genus), euler)


def boundary_loops(mesh: Any) -> int:
    """Closed loops of edges that belong to one face only (the rims of holes)."""
    edges = np.sort(mesh.edges, axis=1)
    unique, counts = np.unique(edges, axis=0, return_counts=True)
    rims = unique[counts == 1]
    if len(rims) == 0:
        return 0
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes, index = np.unique(rims, return_inverse=True)
    index = index.reshape(-1, 2)
    graph = coo_matrix((np.ones(len(index)), (index[:, 0], index[:, 1])), shape=(len(nodes), len(nodes)))
    return int(connected_components(graph, directed=False)[0])


def surface_points(mesh: Any, count: int, seed: int = 0) -> np.ndarray:
    """[count, 3] points drawn uniformly by area on the mesh's surface, the same ones for the same seed."""
    import trimesh.sample

    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points)


def chamfer(
    a: np.ndarray, b: np.ndarray, a_dense: np.ndarray | None = None, b_dense: np.ndarray | None = None
) -> float:
    """Symmetric Chamfer distance of point sets a [N, 3] and b [M, 3]: ½(mean_a min_b ‖a − b‖ + mean_b min_a ‖b − a‖),
    in scene units (Euclidean, not squared: the average distance between the surfaces; the Chamfer-L1 of the
    Occupancy Networks and DMTet papers). The nearest points may be sought in denser samples of the same surfaces
    (`a_dense`, `b_dense`). Infinite when either set is empty."""
    if len(a) == 0 or len(b) == 0:
        return float("inf")
    from scipy.spatial import cKDTree

    a_to_b, _ = cKDTree(b if b_dense is None else b_dense).query(a)
    b_to_a, _ = cKDTree(a if a_dense is None else a_dense).query(b)
    return 0.5 * float(a_to_b.mean() + b_to_a.mean())


def mesh_chamfer(mesh: Any, truth: Any) -> float:
    """Chamfer distance between two meshes' surfaces (infinite when the first has no faces: nothing was made)."""
    if len(mesh.faces) == 0:
        return float("inf")
    a, b = surface_points(mesh, REFERENCE_POINTS), surface_points(truth, REFERENCE_POINTS, seed=1)
    return chamfer(a[:QUERY_POINTS], b[:QUERY_POINTS], a, b)
