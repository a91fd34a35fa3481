"""Cameras against geometry worked out by hand: ring azimuths, pixel rays, the pole fallback, random cameras and
lights (z up, azimuth 0 at +x, OpenGL camera axes: right, up, and looking down −z)."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.config.schema import CameraConfig
from dreamfusion.nerf.cameras import (
    look_at,
    make_cameras,
    rays,
    ring_cameras,
    sample_cameras,
    sample_elevation,
    sample_lights,
    spherical,
    view_prompt,
)

torch.set_num_threads(1)


def test_cameras_to_a_device_keep_every_field():
    cams = make_cameras(torch.tensor([10.0, 70.0]), torch.tensor([-30.0, 170.0]), torch.tensor([2.4, 2.6]), 50.0)
    moved = cams.to("cpu")
    assert torch.equal(moved.c2w, cams.c2w) and moved.fov == 50.0
    assert torch.equal(moved.elevation, cams.elevation) and torch.equal(moved.azimuth, cams.azimuth)


@pytest.mark.parametrize(
    "elevation, azimuth, expected",
    [
        (0, 0, "a cube, front view"),
        (0, 90, "a cube, side view"),
        (0, 180, "a cube, back view"),
        (70, 0, "a cube, overhead view"),
    ],
)
def test_view_prompt_appends_the_view_only_when_view_dependent(elevation, azimuth, expected):
    assert view_prompt("a cube", elevation, azimuth, True) == expected
    assert view_prompt("a cube", elevation, azimuth, False) == "a cube"


def test_spherical_off_the_axes():
    """Elevation 30°, azimuth 90°, distance 2: (0, 2·cos 30°, 2·sin 30°) = (0, √3, 1)."""
    p = spherical(torch.tensor([30.0, -90.0]), torch.tensor([90.0, 0.0]), torch.tensor([2.0, 3.0]))
    assert torch.allclose(p, torch.tensor([[0.0, math.sqrt(3), 1.0], [0.0, 0.0, -3.0]]), atol=1e-6)


def test_look_at_returns_one_4x4_matrix_per_camera():
    pos = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 1.0], [-1.0, -1.0, 0.5]])
    assert look_at(pos).shape == (3, 4, 4)


def test_look_at_at_the_poles_falls_back_to_world_y_as_up():
    """Straight above (forward = −z) or below (forward = +z) the object, right = forward × y and up = right ×
    forward: right = +x, up = +y from above; right = −x, up = +y from below."""
    c2w = look_at(torch.tensor([[0.0, 0.0, 2.5], [0.0, 0.0, -3.0]]))
    right, up, back = c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2]
    assert torch.allclose(right, torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), atol=1e-6)
    assert torch.allclose(up, torch.tensor([[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    assert torch.allclose(back, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), atol=1e-6)


def test_ring_cameras_are_evenly_spaced_and_wrapped_to_plus_minus_180():
    """n = 4 from 0°: 0, 90, 180 → −180, 270 → −90; offset 45°: 45, 135, 225 → −135, 315 → −45."""
    cams = ring_cameras(4, 20.0, 2.5, 40.0)
    assert cams.azimuth.tolist() == [0.0, 90.0, -180.0, -90.0]
    assert cams.elevation.tolist() == [20.0] * 4 and cams.fov == 40.0
    assert ring_cameras(4, 20.0, 2.5, 40.0, offset=45.0).azimuth.tolist() == [45.0, 135.0, -135.0, -45.0]
    assert ring_cameras(3, 0.0, 2.0, 40.0).azimuth.tolist() == pytest.approx([0.0, 120.0, -120.0])
    # camera 1 (azimuth 90°) sits at (0, d·cos 20°, d·sin 20°)
    el = math.radians(20.0)
    assert torch.allclose(cams.position[1], torch.tensor([0.0, 2.5 * math.cos(el), 2.5 * math.sin(el)]), atol=1e-6)


def test_pixel_rays_by_hand():
    """Camera at (2.5, 0, 0) looking at the origin: right = +y, up = +z, back = +x. At resolution 4 and a 90° fov
    the focal length is 2 px, so the top-left pixel centre (0.5, 0.5) is the camera direction (−0.75, 0.75, −1)
    and the bottom-right one (3.5, 3.5) is (0.75, −0.75, −1); in world terms (−1, ∓0.75, ±0.75)/√2.125."""
    cams = make_cameras(torch.tensor([0.0]), torch.tensor([0.0]), torch.tensor([2.5]), 90.0)
    origins, dirs = rays(cams, 4)
    norm = math.sqrt(2.125)
    assert torch.allclose(dirs[0, 0], torch.tensor([-1.0, -0.75, 0.75]) / norm, atol=1e-6)  # top left
    assert torch.allclose(dirs[0, 3], torch.tensor([-1.0, 0.75, 0.75]) / norm, atol=1e-6)  # top right
    assert torch.allclose(dirs[0, 15], torch.tensor([-1.0, 0.75, -0.75]) / norm, atol=1e-6)  # bottom right
    assert torch.equal(origins[0, 0], torch.tensor([2.5, 0.0, 0.0]))


def test_sample_cameras_cover_the_configured_ranges():
    """Azimuth and distance uniform in their ranges; elevation uniform on the sphere's band, so sin(elevation) is
    uniform on [sin(lo), sin(hi)]."""
    cfg = CameraConfig(elevation=(-10.0, 45.0), azimuth=(-180.0, 180.0), distance=(2.2, 2.8))
    n = 4000
    cams = sample_cameras(cfg, n, torch.Generator().manual_seed(0))
    distance = cams.position.norm(dim=-1)
    for values, (lo, hi) in [(cams.elevation, cfg.elevation), (cams.azimuth, cfg.azimuth), (distance, cfg.distance)]:
        assert lo - 1e-4 <= float(values.min()) and float(values.max()) <= hi + 1e-4
        assert float(values.min()) < lo + 0.01 * (hi - lo) and float(values.max()) > hi - 0.01 * (hi - lo)
    sin_lo, sin_hi = math.sin(math.radians(-10.0)), math.sin(math.radians(45.0))
    # means of uniforms: standard errors ≈ 0.25/√n ≈ 0.004, 104/√n ≈ 1.6 and 0.17/√n ≈ 0.003
    assert float(torch.sin(torch.deg2rad(cams.elevation)).mean()) == pytest.approx((sin_lo + sin_hi) / 2, abs=0.02)
    assert abs(float(cams.azimuth.mean())) < 8
    assert float(distance.mean()) == pytest.approx(2.5, abs=0.015)


def test_sample_elevation_in_each_mode_maps_the_generators_draws_by_hand():
    """`angle`: lo + (hi − lo)·u degrees; `sphere`: asin(sin lo + (sin hi − sin lo)·u), uniform in sin(elevation);
    `mixed`: one draw r first, then `angle` for the whole batch if r < 1/2, else `sphere`. u, r: the generator's own
    uniforms, drawn here from a generator seeded alike; the mappings are computed in float64."""
    lo, hi = -10.0, 45.0
    sin_lo, sin_hi = math.sin(math.radians(lo)), math.sin(math.radians(hi))

    def by_hand(mode: str, u: torch.Tensor) -> torch.Tensor:
        u = u.double()
        if mode == "angle":
            return lo + (hi - lo) * u
        return torch.rad2deg(torch.asin(sin_lo + (sin_hi - sin_lo) * u))

    branches = []
    for seed in range(12):
        for mode in ("angle", "sphere"):
            cfg = CameraConfig(elevation=(lo, hi), elevation_sampling=mode)
            drawn = sample_elevation(cfg, 6, torch.Generator().manual_seed(seed))
            expected = by_hand(mode, torch.rand(6, generator=torch.Generator().manual_seed(seed)))
            assert torch.allclose(drawn.double(), expected, atol=1e-4)
        g = torch.Generator().manual_seed(seed)
        r = float(torch.rand((), generator=g))
        branches.append("angle" if r < 0.5 else "sphere")
        expected = by_hand(branches[-1], torch.rand(6, generator=g))
        mixed = sample_elevation(
            CameraConfig(elevation=(lo, hi), elevation_sampling="mixed"), 6, torch.Generator().manual_seed(seed)
        )
        assert torch.allclose(mixed.double(), expected, atol=1e-4)
    assert set(branches) == {"angle", "sphere"}  # both halves of `mixed` were checked
    half = torch.full((1,), 0.5)  # the two mappings are told apart: 17.5° against 15.5° at u = 1/2
    assert float(by_hand("angle", half)) == pytest.approx(17.5)
    assert float(by_hand("sphere", half)) == pytest.approx(15.47, abs=0.01)


def test_sample_lights_sit_at_one_and_a_half_camera_distances_around_the_camera():
    """Each light is 1.5× as far from the origin as its camera, in the direction of the camera's unit vector plus
    N(0, 0.4²) jitter: the mean cosine between light and camera is that of such a jitter, estimated here
    independently from 200 000 draws of our own."""
    n = 4000
    g = torch.Generator().manual_seed(0)
    cams = make_cameras(
        torch.rand(n, generator=g) * 60 - 10,
        torch.rand(n, generator=g) * 360 - 180,
        2 + torch.rand(n, generator=g),
        40.0,
    )
    lights = sample_lights(cams, torch.Generator().manual_seed(1))
    assert lights.shape == (n, 3)
    assert torch.allclose(lights.norm(dim=-1), 1.5 * cams.position.norm(dim=-1), rtol=1e-5)
    cosine = (lights * cams.position).sum(-1) / (lights.norm(dim=-1) * cams.position.norm(dim=-1))

    axis = torch.tensor([1.0, 0.0, 0.0])
    jittered = axis + 0.4 * torch.randn(200_000, 3, generator=torch.Generator().manual_seed(2))
    expected = float((jittered[:, 0] / jittered.norm(dim=-1)).mean())  # ≈ 0.84
    assert float(cosine.mean()) == pytest.approx(expected, abs=0.01)  # standard error ≈ 0.15/√n ≈ 0.0025
