"""The NeRF field's size presets, the cameras and the volume renderer, against numbers worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.config.schema import CameraConfig, NerfConfig
from dreamfusion.nerf.cameras import (
    Cameras,
    look_at,
    make_cameras,
    rays,
    sample_elevation,
    spherical,
    view_label,
)
from dreamfusion.nerf.field import (
    NeRFField,
    expected_parameter_count,
    level_resolutions,
    parameter_count,
)
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.nerf.render import Lighting, composite, render, render_shadings

torch.set_num_threads(1)

# Parameter counts for the NeRF size table (docs/guide/spec.md), by hand from NERF_PRESETS in config.py.
# grid = F · Σ_levels R³ (levels geometric from base to max resolution, rounded); the decoder is
# Linear(L·F → W) + (depth − 1) × Linear(W → W) + Linear(W → 4), each with weights and biases.
#   tiny:   L=2 F=2  R=[8,16]:            2·(512+4096)                        =      9,216
#           decoder 4→16→4:               (4·16+16) + (16·4+4) = 80 + 68       =        148   → 9,364
#   small:  L=3 F=4  R=[8,16,32]:         4·(512+4096+32768)                  =    149,504
#           decoder 12→32→4:              (12·32+32) + (32·4+4) = 416 + 132    =        548   → 150,052
#   medium: L=4 F=4  R=[16,25,40,64]:     growth 4^(1/3)=1.587: 25.40→25, 40.32→40
#                                         4·(4096+15625+64000+262144)         =  1,383,460
#           decoder 16→64→64→4:           1088 + 4160 + 260                   =      5,508   → 1,388,968
#   large:  L=5 F=8  R=[16,27,45,76,128]: growth 8^(1/4)=1.682: 26.91→27, 45.25→45, 76.11→76
#                                         8·(4096+19683+91125+438976+2097152) = 21,208,256
#           decoder 40→64→64→4:           2624 + 4160 + 260                   =      7,044   → 21,215,300
DOCUMENTED = {"tiny": 9_364, "small": 150_052, "medium": 1_388_968, "large": 21_215_300}
RESOLUTIONS = {"tiny": [8, 16], "small": [8, 16, 32], "medium": [16, 25, 40, 64], "large": [16, 27, 45, 76, 128]}


@pytest.mark.parametrize("size", list(DOCUMENTED))
def test_preset_parameter_count_matches_closed_form_and_docs(size):
    cfg = NerfConfig(size=size)
    assert level_resolutions(cfg) == RESOLUTIONS[size]
    field = NeRFField(cfg)
    assert parameter_count(field) == expected_parameter_count(cfg) == DOCUMENTED[size]


def test_explicit_width_and_depth_override_the_preset():
    cfg = NerfConfig(size="tiny", mlp_width=8, mlp_depth=3)
    field = NeRFField(cfg)
    linears = [m for m in field.decoder if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4, 8), (8, 8), (8, 8), (8, 4)]
    # grid as the tiny preset (9,216), decoder (4·8+8) + 2·(8·8+8) + (8·4+4) = 40 + 144 + 36 = 220
    assert parameter_count(field) == expected_parameter_count(cfg) == 9_216 + 220
    assert cfg.grid_levels == 2 and cfg.grid_max_resolution == 16  # the rest still comes from the preset


def test_field_outputs_positive_density_and_unit_range_albedo():
    torch.manual_seed(0)
    field = NeRFField(NerfConfig(size="tiny"))
    x = torch.rand(500, 3) * 2 - 1
    sigma, albedo = field(x)
    assert sigma.shape == (500,) and albedo.shape == (500, 3)
    assert (sigma >= 0).all() and (albedo > 0).all() and (albedo < 1).all()
    # the init blob: denser at the centre than at the blob's edge
    centre, edge = field.density(torch.zeros(1, 3)), field.density(torch.tensor([[0.0, 0.0, 0.9]]))
    assert centre > 5 * edge


# -- cameras ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "elevation, azimuth, label",
    [
        (0, 0, "front"),
        (0, 45, "front"),
        (0, -45, "front"),
        (0, 45.1, "side"),
        (0, -45.1, "side"),
        (0, 90, "side"),
        (0, -90, "side"),
        (0, 134.9, "side"),
        (0, 135, "back"),
        (0, -135, "back"),
        (0, 180, "back"),
        (0, -180, "back"),
        (0, 225, "back"),
        (0, 315, "front"),
        (0, 360, "front"),
        (60, 0, "front"),
        (60.1, 0, "overhead"),
        (89, 180, "overhead"),
        (-10, 180, "back"),
    ],
)
def test_view_label_boundaries(elevation, azimuth, label):
    """DreamFusion's split: overhead strictly above 60°, front/back within ±45° (inclusive) of 0°/180°."""
    assert view_label(elevation, azimuth) == label


def _positions() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    random = torch.randn(20, 3, generator=g) * 2
    poles = torch.tensor([[0.0, 0.0, 2.5], [0.0, 0.0, -2.5], [1e-8, 0.0, 3.0]])
    return torch.cat([random, poles])


def test_look_at_is_a_proper_rigid_transform():
    pos = _positions()
    c2w = look_at(pos)
    r = c2w[:, :3, :3]
    eye = torch.eye(3).expand_as(r)
    assert torch.allclose(r.transpose(1, 2) @ r, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(len(pos)), atol=1e-5)
    assert torch.equal(c2w[:, :3, 3], pos)
    assert torch.equal(c2w[:, 3], torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(len(pos), 4))


def test_camera_looks_at_the_origin_with_z_up():
    pos = _positions()
    c2w = look_at(pos)
    back = c2w[:, :3, 2]  # OpenGL: the camera looks down its −z axis
    assert torch.allclose(back, pos / pos.norm(dim=-1, keepdim=True), atol=1e-5)
    off_pole = pos[:, :2].norm(dim=-1) > 1e-3
    assert (c2w[off_pole, 2, 1] > 0).all()  # image up has a positive world-z component: renders are upright
    assert torch.allclose(c2w[off_pole, 2, 0], torch.zeros(int(off_pole.sum())), atol=1e-6)  # right is horizontal


def test_centre_ray_passes_through_the_origin():
    cams = make_cameras(
        torch.tensor([0.0, 30.0, -10.0, 89.0]),
        torch.tensor([0.0, 120.0, -75.0, 10.0]),
        torch.tensor([2.5, 2.2, 3.0, 2.8]),
        fov=40.0,
    )
    origins, dirs = rays(cams, 5)  # odd resolution: pixel (2, 2) is the exact image centre
    o, d = origins[:, 12], dirs[:, 12]
    s = -(o * d).sum(-1)  # distance along the ray of the closest approach to the origin
    assert (s > 0).all()  # in front of the camera
    assert torch.allclose(o + s[:, None] * d, torch.zeros(4, 3), atol=1e-5)
    assert torch.allclose(s, torch.tensor([2.5, 2.2, 3.0, 2.8]), atol=1e-5)


def test_rays_are_unit_and_start_at_the_camera():
    cams = make_cameras(torch.tensor([10.0, 45.0]), torch.tensor([-30.0, 170.0]), torch.tensor([2.4, 2.6]), 50.0)
    origins, dirs = rays(cams, 6)
    assert origins.shape == dirs.shape == (2, 36, 3)
    assert torch.allclose(dirs.norm(dim=-1), torch.ones(2, 36), atol=1e-6)
    assert torch.equal(origins, cams.position[:, None].expand_as(origins))
    # the half field of view: the top-centre edge of the image is fov/2 above the centre direction
    top = dirs.view(2, 6, 6, 3)[:, 0, 2:4].mean(1)
    centre = -cams.position / cams.position.norm(dim=-1, keepdim=True)
    top = top / top.norm(dim=-1, keepdim=True)
    angle = torch.rad2deg(torch.acos((top * centre).sum(-1)))
    expected = math.degrees(math.atan(math.tan(math.radians(25)) * 5 / 6))  # row 0 centre is 2.5 px of 3 from mid
    assert torch.allclose(angle, torch.full((2,), expected), atol=0.05)


def test_spherical_azimuth_zero_is_plus_x():
    p = spherical(torch.tensor([0.0, 90.0]), torch.tensor([0.0, 0.0]), torch.tensor([2.0, 2.0]))
    assert torch.allclose(p, torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]]), atol=1e-6)


# -- renderer -----------------------------------------------------------------------------------------------------


def _cams(distance: float = 2.0) -> Cameras:
    """Two cameras close enough that every ray of a 40° view hits the unit ball (asin(1/2) = 30° > 27.2°)."""
    return make_cameras(torch.tensor([15.0, -5.0]), torch.tensor([20.0, -140.0]), torch.full((2,), distance), 40.0)


def _solid(value: tuple[float, float, float]):
    colour = torch.tensor(value)
    return lambda dirs: colour.expand_as(dirs)


@pytest.mark.parametrize("shading", ["albedo", "lambertian", "textureless"])
def test_empty_field_renders_exactly_the_background(shading):
    def empty(x):
        return torch.zeros(x.shape[0]), torch.full((x.shape[0], 3), 0.3)

    light = Lighting(shading, None if shading == "albedo" else torch.tensor([[3.0, 0.0, 1.0], [0.0, 3.0, 1.0]]))
    bg = (0.2, 0.4, 0.6)
    out = render(empty, _solid(bg), _cams(), 8, 16, light, torch.Generator().manual_seed(0))
    assert torch.equal(out.opacity, torch.zeros(2, 1, 8, 8))
    assert torch.equal(out.rgb, torch.tensor(bg).view(1, 3, 1, 1).expand(2, 3, 8, 8))
    # an explicit bg_color overrides the background function
    out = render(empty, _solid(bg), _cams(), 8, 16, light, bg_color=torch.tensor([1.0, 0.0, 0.5]))
    assert torch.equal(out.rgb, torch.tensor([1.0, 0.0, 0.5]).view(1, 3, 1, 1).expand(2, 3, 8, 8))


def test_dense_constant_field_renders_its_albedo():
    albedo = torch.tensor([0.2, 0.7, 0.4])

    def dense(x):
        return torch.full((x.shape[0],), 1e4), albedo.expand(x.shape[0], 3)

    out = render(dense, _solid((1.0, 1.0, 1.0)), _cams(), 8, 16, Lighting("albedo", None), need_normals=False)
    assert torch.allclose(out.opacity, torch.ones(2, 1, 8, 8), atol=1e-6)
    assert torch.allclose(out.rgb, albedo.view(1, 3, 1, 1).expand(2, 3, 8, 8), atol=1e-6)


def _sphere(albedo: tuple[float, float, float]):
    colour = torch.tensor(albedo)

    def field(x):
        return 200 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 40), colour.expand(x.shape[0], 3)

    return field


def test_textureless_shading_is_greyscale_and_shows_geometry():
    lights = torch.tensor([[3.0, 1.0, 2.0], [-2.0, -2.0, 2.0]])
    out = render(_sphere((0.9, 0.1, 0.1)), _solid((1.0, 1.0, 1.0)), _cams(2.5), 12, 32, Lighting("textureless", lights))
    rgb = out.rgb
    assert torch.allclose(rgb[:, 0], rgb[:, 1], atol=1e-6) and torch.allclose(rgb[:, 1], rgb[:, 2], atol=1e-6)
    inside = out.opacity[:, 0] > 0.99
    assert inside.sum() > 20 and rgb[:, 0][inside].std() > 0.05  # the lighting varies over the sphere
    # the same scene lit in colour is not grey: the albedo shows
    lit = render(_sphere((0.9, 0.1, 0.1)), _solid((1.0, 1.0, 1.0)), _cams(2.5), 12, 32, Lighting("lambertian", lights))
    assert (lit.rgb[:, 0] - lit.rgb[:, 1])[inside].min() > 0.1


def test_composite_weights_sum_to_the_opacity_formula():
    """Σ_i T_i(1 − e^{−σ_i δ}) telescopes to 1 − e^{−Σ σ_i δ} ≤ 1."""
    g = torch.Generator().manual_seed(0)
    sigma = torch.rand(64, 32, generator=g) * torch.logspace(-2, 3, 64)[:, None]
    delta = torch.rand(64, 1, generator=g) * 0.1
    w = composite(sigma, delta)
    assert (w >= 0).all()
    total = w.sum(-1)
    assert (total <= 1 + 1e-6).all()
    assert torch.allclose(total, 1 - torch.exp(-(sigma * delta).sum(-1)), atol=1e-5)


def test_render_of_a_random_field_has_opacity_in_unit_range():
    torch.manual_seed(0)
    field = NeRFField(NerfConfig(size="tiny"))
    out = render(
        field,
        _solid((1.0, 1.0, 1.0)),
        _cams(2.5),
        8,
        16,
        Lighting("albedo", None),
        torch.Generator().manual_seed(0),
        need_normals=False,
    )
    assert (out.opacity >= 0).all() and (out.opacity <= 1 + 1e-6).all()
    assert (out.rgb >= 0).all() and (out.rgb <= 1 + 1e-6).all()
    assert out.opacity.max() > 0.5  # the init blob is visible


def test_one_pass_in_several_shadings_is_bit_for_bit_several_renders():
    """`render_shadings` marches and reads the field once; each shading must still be exactly its own render."""
    torch.manual_seed(0)
    field = NeRFField(NerfConfig(size="tiny"))
    occupancy = OccupancyGrid(16)
    occupancy.update(field.density)
    lights = torch.tensor([[3.0, 1.0, 2.0], [-2.0, -2.0, 2.0]])
    shadings = [Lighting("lambertian", lights), Lighting("textureless", lights), Lighting("albedo", None)]
    bg = _solid((0.2, 0.4, 0.6))
    shared = render_shadings(field, bg, _cams(2.5), 8, 16, shadings, normal_step=0.05, occupancy=occupancy)
    for light, out in zip(shadings, shared):
        alone = render(field, bg, _cams(2.5), 8, 16, light, normal_step=0.05, occupancy=occupancy)
        for name in ("rgb", "opacity", "normal", "orientation", "opacity_entropy"):
            assert torch.equal(getattr(out, name), getattr(alone, name)), (light.shading, name)
    assert not torch.equal(shared[0].rgb, shared[1].rgb)  # the shadings do differ


@pytest.mark.parametrize("mode", ["sphere", "angle"])
def test_elevation_sampling_modes_have_their_distributions(mode):
    """Over (−10°, 90°): `angle` is uniform in degrees (mean 40°), `sphere` uniform in sin(elevation), so its mean
    is the band's mean latitude ∫ asin(u) du / (1 − sin(−10°)), ≈ 28.4°, and a quarter of the draws lie below
    asin(sin(−10°) + (1 + sin 10°)/4) ≈ 7.37°."""
    cfg = CameraConfig(elevation=(-10.0, 90.0), elevation_sampling=mode)
    e = sample_elevation(cfg, 100_000, torch.Generator().manual_seed(0)).double()
    assert e.min() >= -10 and e.max() <= 90
    lo = math.sin(math.radians(-10))
    if mode == "angle":
        assert float(e.mean()) == pytest.approx(40.0, abs=0.3)
        return
    asin_integral = lambda u: u * math.asin(u) + math.sqrt(1 - u * u)  # ∫ asin(u) du
    mean = math.degrees((asin_integral(1.0) - asin_integral(lo)) / (1 - lo))
    assert float(e.mean()) == pytest.approx(mean, abs=0.3)
    quartile = math.degrees(math.asin(lo + (1 - lo) / 4))
    assert float((e < quartile).double().mean()) == pytest.approx(0.25, abs=0.01)


def test_mixed_elevation_sampling_picks_one_mode_per_batch_with_one_draw():
    """threestudio's sampler: a coin (one draw of the generator) decides angle or sphere for the whole batch, and the
    batch is then exactly what that mode draws next."""
    picked = []
    for seed in range(200):
        got = sample_elevation(CameraConfig(elevation_sampling="mixed"), 4, torch.Generator().manual_seed(seed))
        g = torch.Generator().manual_seed(seed)
        mode = "angle" if float(torch.rand((), generator=g)) < 0.5 else "sphere"
        assert torch.equal(got, sample_elevation(CameraConfig(elevation_sampling=mode), 4, g))
        picked.append(mode)
    assert 70 < picked.count("angle") < 130
