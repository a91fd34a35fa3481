"""The volume renderer's pieces against closed forms: ray–sphere intervals, stratified depths, compositing weights,
the three shading modes, normals, the orientation and opacity-entropy regularisers, and resizing."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.nerf.cameras import Cameras, make_cameras, rays
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.nerf.render import (
    Lighting,
    March,
    _binary_entropy,
    composite,
    ray_sphere,
    render,
    resize,
    sample_along,
    shade,
    visible_normals,
)
from dreamfusion.timing import PhaseTimes

torch.set_num_threads(1)


def _cams(azimuths: list[float], distance: float = 2.5, fov: float = 40.0) -> Cameras:
    n = len(azimuths)
    return make_cameras(torch.zeros(n), torch.tensor(azimuths), torch.full((n,), distance), fov)


def _solid(value: tuple[float, float, float]):
    colour = torch.tensor(value)
    return lambda dirs: colour.expand_as(dirs)


def _sphere(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense ball of radius 0.5 with a soft edge, grey albedo."""
    return 200 * torch.sigmoid((0.5 - x.norm(dim=-1)) * 40), torch.full((x.shape[0], 3), 0.5)


def _slab(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """σ = 0.5·(x + 1), rising along world x: its outward normal −∇σ/|∇σ| is −x everywhere (exactly, by finite
    differences, since σ is linear in x and constant in y and z)."""
    return 0.5 * (x[:, 0] + 1), torch.full((x.shape[0], 3), 0.5)


# -- rays through the unit ball ------------------------------------------------------------------------------


def test_ray_sphere_near_and_far_by_hand():
    origins = torch.tensor(
        [
            [0.0, 0.0, 3.0],  # through the centre: near 3 − 1, far 3 + 1
            [0.6, 0.0, 2.0],  # off-centre: half-chord √(1 − 0.36) = 0.8 around depth 2
            [0.0, 0.0, 0.5],  # from inside the ball: near 0, far 1 − 0.5
            [2.0, 0.0, 2.0],  # misses (passes at distance 2): zero length at the closest approach
        ],
        dtype=torch.float64,
    )
    dirs = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]], dtype=torch.float64)
    near, far = ray_sphere(origins, dirs)
    assert torch.allclose(near, torch.tensor([2.0, 1.2, 0.0, 2.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(far, torch.tensor([4.0, 2.8, 0.5, 2.0], dtype=torch.float64), atol=1e-12)


def test_sample_along_without_a_generator_takes_bin_centres():
    near, far = torch.tensor([1.0, 0.0]), torch.tensor([3.0, 0.5])
    depth, delta = sample_along(near, far, 4, None)
    assert torch.allclose(delta, torch.tensor([[0.5], [0.125]]))
    assert torch.allclose(depth, torch.tensor([[1.25, 1.75, 2.25, 2.75], [0.0625, 0.1875, 0.3125, 0.4375]]))


def test_sample_along_jitters_each_sample_inside_its_own_bin():
    """Stratified sampling: depth i lies in [near + i·δ, near + (i + 1)·δ), independently for every ray."""
    r, n = 256, 4
    near, far = torch.ones(r), torch.full((r,), 3.0)
    depth, delta = sample_along(near, far, n, torch.Generator().manual_seed(0))
    lower = 1.0 + 0.5 * torch.arange(n)
    assert torch.equal(delta, torch.full((r, 1), 0.5))
    assert (depth >= lower).all() and (depth < lower + 0.5).all()
    offsets = (depth - lower) / 0.5  # [R, S] the uniform draws
    assert float(offsets.std(0).min()) > 0.2  # independent across rays (U(0, 1) has std 0.29), not one shared draw
    assert float(offsets.mean()) == pytest.approx(0.5, abs=0.03)


# -- compositing and shading ---------------------------------------------------------------------------------


def test_composite_weights_match_the_closed_form_per_sample():
    """w_i = exp(−δ·Σ_{j<i} σ_j) − exp(−δ·Σ_{j≤i} σ_j): transmittance before the sample times its absorption."""
    sigma = torch.tensor([[1.0, 2.0, 0.0, 3.0], [0.0, 0.0, 5.0, 0.5]], dtype=torch.float64)
    delta = torch.tensor([[0.5], [0.2]], dtype=torch.float64)
    depth_before = torch.cat([torch.zeros(2, 1, dtype=torch.float64), (sigma * delta).cumsum(-1)[:, :-1]], -1)
    expected = torch.exp(-depth_before) - torch.exp(-(sigma * delta).cumsum(-1))
    assert torch.allclose(composite(sigma, delta), expected, atol=1e-9)


def _shading_scene():
    """Two rays (views 0 and 1) of three samples each, the same samples in both, lit from (0, 0, 2) in view 0 and
    from (0, 0, −2) in view 1. Cosines n·l, by hand:
      sample 0 at the origin, n = +z:           l = +z → 1;              view 1: l = −z → −1 → 0
      sample 1 at (1, 0, 0), n = (−0.6, 0, 0.8): l = (−1, 0, 2)/√5 → 2.2/√5; view 1: l = (−1, 0, −2)/√5 → −1/√5 → 0
      sample 2 at the origin, n = −z:           → −1 → 0;                view 1: → 1
    """
    albedo = torch.tensor([[0.2, 0.4, 0.6], [1.0, 0.5, 0.0], [0.3, 0.3, 0.9]]).expand(2, 3, 3)
    normals = torch.tensor([[0.0, 0.0, 1.0], [-0.6, 0.0, 0.8], [0.0, 0.0, -1.0]]).expand(2, 3, 3)
    points = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).expand(2, 3, 3)
    lights = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, -2.0]])
    cosine = torch.tensor([[1.0, 2.2 / math.sqrt(5), 0.0], [0.0, 0.0, 1.0]])  # [R, S]
    return albedo, normals, points, lights, cosine


@pytest.mark.parametrize("mode", ["albedo", "lambertian", "textureless"])
def test_shade_each_mode_by_hand(mode):
    albedo, normals, points, lights, cosine = _shading_scene()
    light = Lighting(mode, lights, ambient=0.3, diffuse=0.6)
    colour = shade(albedo, normals, points, light, torch.tensor([0, 1]))
    lit = (0.3 + 0.6 * cosine)[..., None]  # [R, S, 1]
    expected = {"albedo": albedo, "lambertian": albedo * lit, "textureless": lit.expand(2, 3, 3)}[mode]
    assert colour.shape == (2, 3, 3)
    assert torch.allclose(colour, expected, atol=1e-6)


def test_lit_shading_without_normals_or_a_light_fails_with_a_clear_message():
    albedo, normals, points, lights, _ = _shading_scene()
    view = torch.tensor([0, 1])
    with pytest.raises(AssertionError, match="^lit shading needs a light and normals$"):
        shade(albedo, None, points, Lighting("lambertian", lights), view)
    with pytest.raises(AssertionError, match="^lit shading needs a light and normals$"):
        shade(albedo, normals, points, Lighting("textureless", None), view)


def _march(x: torch.Tensor, weights: list[float], gradient: torch.Tensor | None = None) -> March:
    sigma, albedo = _slab(x)
    return March(1, 1, torch.zeros(1, 3), x[None], sigma, albedo, torch.tensor([weights]), gradient)


def test_visible_normals_are_computed_where_any_sample_is_visible_even_one():
    x = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.0, 0.5], [0.3, -0.3, 0.0]])
    normals = visible_normals(_slab, _march(x, [0.0, 0.5, 1e-5]), 1 / 64)
    assert torch.allclose(normals[0], torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]), atol=1e-5)


def test_visible_normals_from_an_exact_gradient_read_no_field():
    """A march that carries ∇σ gives −∇σ/|∇σ| at the visible samples without calling the field again."""
    x = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.0, 0.5], [0.3, -0.3, 0.0]])
    gradient = torch.tensor([[1.0, 0.0, 0.0], [0.0, 3.0, 4.0], [0.0, 0.0, 2.0]])

    def no_field(_):
        raise AssertionError("the field was read")

    normals = visible_normals(no_field, _march(x, [0.0, 0.5, 1e-3], gradient), 1 / 64)
    expected = torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.6, -0.8], [0.0, 0.0, -1.0]])
    assert torch.allclose(normals[0], expected, atol=1e-6)


def test_visible_normals_of_a_march_with_nothing_visible_are_zero_without_reading_the_field():
    x = torch.tensor([[0.1, 0.2, 0.3], [-0.4, 0.0, 0.5], [0.3, -0.3, 0.0]])

    def no_field(_):
        raise AssertionError("the field was read")

    normals = visible_normals(no_field, _march(x, [0.0, 1e-4, 5e-5]), 1 / 64)  # 1e-4 is the threshold, not above
    assert torch.equal(normals, torch.zeros(1, 3, 3))


# -- the render ------------------------------------------------------------------------------------------------


def test_render_computes_normals_by_default_and_they_face_the_camera():
    """At the centre pixel the ray meets the ball head-on: the weight-averaged normal is the outward normal there,
    the unit vector towards the camera, times an opacity of ~1 (to within the forward differences' bias, ~3°)."""
    cams = _cams([30.0, -120.0])
    out = render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 5, 48, Lighting("albedo", None))
    assert out.normal is not None and out.normal.shape == (2, 3, 5, 5)
    centre = out.normal[:, :, 2, 2]
    towards_camera = cams.position / cams.position.norm(dim=-1, keepdim=True)
    assert torch.allclose(out.opacity[:, 0, 2, 2], torch.ones(2), atol=1e-4)
    assert torch.allclose(centre.norm(dim=-1), torch.ones(2), atol=0.02)
    assert ((centre * towards_camera).sum(-1) > math.cos(math.radians(4))).all()


def test_render_with_an_exact_gradient_reads_it_instead_of_the_field():
    """`gradient` gives σ, albedo and ∇σ in one read: the field itself is never called, and the normals are
    −∇σ/|∇σ| (the slab's −x), the same render as the field's with finite-difference normals."""

    def slab_gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sigma, albedo = _slab(x)
        return sigma, albedo, torch.tensor([0.5, 0.0, 0.0]).expand_as(x)

    def no_field(_):
        raise AssertionError("the field was read")

    cams = _cams([0.0, 180.0])
    exact = render(no_field, _solid((1.0, 1.0, 1.0)), cams, 4, 16, Lighting("albedo", None), gradient=slab_gradient)
    plain = render(_slab, _solid((1.0, 1.0, 1.0)), cams, 4, 16, Lighting("albedo", None))
    assert exact.normal is not None and plain.normal is not None
    assert float(plain.opacity.min()) > 0.1  # the slab is seen by every pixel
    assert torch.allclose(exact.normal, plain.normal, atol=1e-5) and torch.equal(exact.rgb, plain.rgb)
    assert torch.allclose(exact.normal[:, 1:], torch.zeros_like(exact.normal[:, 1:]))  # −x: no y or z part
    assert torch.allclose(exact.normal[:, 0], -exact.opacity[:, 0], atol=1e-5)


def test_render_without_normals_reads_the_field_not_the_dearer_gradient():
    """An albedo render that needs no normals has no use for ∇σ: it reads `field`, never `gradient`."""

    def no_gradient(_):
        raise AssertionError("the gradient was read")

    cams = _cams([0.0])
    light = Lighting("albedo", None)
    out = render(_slab, _solid((1.0, 1.0, 1.0)), cams, 4, 16, light, need_normals=False, gradient=no_gradient)
    assert out.normal is None
    assert torch.equal(out.rgb, render(_slab, _solid((1.0, 1.0, 1.0)), cams, 4, 16, light, need_normals=False).rgb)


def test_render_without_normals_unless_lit():
    """need_normals=False skips normals for albedo renders, but lit shading needs them and computes them anyway."""
    lights = torch.tensor([[3.0, 1.0, 2.0], [-2.0, -2.0, 2.0]])
    cams = _cams([20.0, -140.0])
    albedo = render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 6, 24, Lighting("albedo", None), need_normals=False)
    assert albedo.normal is None and float(albedo.orientation) == 0.0
    for mode in ("lambertian", "textureless"):
        skipped = render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 6, 24, Lighting(mode, lights), need_normals=False)
        full = render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 6, 24, Lighting(mode, lights))
        assert skipped.normal is not None
        assert torch.equal(skipped.rgb, full.rgb)


def test_render_jitters_its_samples_with_the_generator():
    """Two seeds give two different stratified renders of the same scene; the same seed gives the same bits."""
    cams = _cams([0.0])
    light = Lighting("albedo", None)

    def rgb(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 8, 8, light, g, need_normals=False).rgb

    assert torch.equal(rgb(0), rgb(0))
    assert not torch.allclose(rgb(0), rgb(1), atol=1e-4)


def test_render_queries_the_field_only_inside_the_unit_cube():
    """A 90° view from distance 2.5 has corner rays that miss the ball; their (zero-length) samples sit at the
    closest approach, up to (±1.67, ±0.83, ±0.83) here, and must still reach the field inside [−1, 1]³."""
    seen: list[torch.Tensor] = []

    def recording(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.detach().abs().max())
        return torch.zeros(x.shape[0]), torch.zeros(x.shape[0], 3)

    cams = _cams([0.0, 180.0], fov=90.0)
    _, dirs = rays(cams, 8)
    assert float(dirs[0, :, 0].max()) > -math.sqrt(1 - 0.4**2)  # precondition: some rays miss (angle > asin(1/2.5))
    out = render(recording, _solid((0.0, 0.0, 0.0)), cams, 8, 8, Lighting("albedo", None), need_normals=False)
    assert seen and max(float(m) for m in seen) <= 1.0
    assert torch.equal(out.opacity, torch.zeros(2, 1, 8, 8))


def test_render_evaluates_the_field_only_in_occupied_cells():
    """An occupancy grid with no occupied cell hides even a dense field; a full grid changes nothing."""
    cams = _cams([10.0, 100.0])
    light = Lighting("albedo", None)
    plain = render(_sphere, _solid((0.2, 0.4, 0.6)), cams, 6, 16, light, need_normals=False)
    full = OccupancyGrid(resolution=8)
    assert torch.equal(
        render(_sphere, _solid((0.2, 0.4, 0.6)), cams, 6, 16, light, need_normals=False, occupancy=full).rgb, plain.rgb
    )
    empty = OccupancyGrid(resolution=8)
    empty.occupied.zero_()
    hidden = render(_sphere, _solid((0.2, 0.4, 0.6)), cams, 6, 16, light, need_normals=False, occupancy=empty)
    assert plain.opacity.max() > 0.99
    assert torch.equal(hidden.opacity, torch.zeros(2, 1, 6, 6))
    assert torch.equal(hidden.rgb, torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1).expand(2, 3, 6, 6))


def test_render_keeps_its_dtype_whatever_the_background_colour():
    bg = torch.tensor([1.0, 0.0, 0.5], dtype=torch.float64)
    cams = _cams([0.0], fov=90.0)
    out = render(
        _sphere, _solid((0.0, 0.0, 0.0)), cams, 4, 8, Lighting("albedo", None), bg_color=bg, need_normals=False
    )
    assert out.rgb.dtype == torch.float32
    assert torch.allclose(out.rgb[0, :, 0, 0], bg.float(), atol=1e-6)  # a corner ray misses the ball


def test_render_times_its_five_phases_under_their_names():
    """The profile of `benchmarks/sds_step.py` reads these names: one entry each, nothing else, once recording."""
    cams = _cams([0.0])
    with PhaseTimes() as times:
        render(_sphere, _solid((1.0, 1.0, 1.0)), cams, 4, 8, Lighting("lambertian", torch.tensor([[3.0, 0.0, 0.0]])))
    assert set(times.ms) == {"render/rays", "render/field", "render/composite", "render/normals", "render/shade"}
    assert set(times.cpu_ms) == set(times.ms)


def test_orientation_penalises_normals_facing_away_from_the_camera():
    """DreamFusion's penalty mean_rays Σ_i w_i·max(0, n_i·d)². The slab's normals are −x everywhere: seen from +x
    (rays d with d_x < 0) they face away with n·d = −d_x, so each ray adds opacity·d_x²; seen from −x they face
    the camera and add nothing. (Samples of weight ≤ 1e-4 get no normal, so the sum misses ≤ 32·1e-4 per ray.)"""
    cams = _cams([0.0, 180.0])
    out = render(_slab, _solid((1.0, 1.0, 1.0)), cams, 6, 32, Lighting("albedo", None))
    _, dirs = rays(cams, 6)  # [2, 36, 3]
    opacity = out.opacity.permute(0, 2, 3, 1).reshape(2, 36)
    assert float(opacity[0].max()) > 0.5  # the slab is visible
    expected = float((opacity[0] * dirs[0, :, 0] ** 2).sum()) / 72
    assert float(out.orientation) == pytest.approx(expected, abs=2e-3)
    assert expected > 0.1


def _entropy(a: float) -> float:
    a = min(max(a, 1e-5), 1 - 1e-5)  # clamped so that empty and solid pixels stay finite
    return -(a * math.log(a) + (1 - a) * math.log(1 - a))


def test_opacity_entropy_is_the_mean_binary_entropy_kept_finite_at_zero_and_one():
    acc = [0.0, 0.5, 1.0, 0.2, 0.9]
    expected = sum(_entropy(a) for a in acc) / len(acc)
    value = float(_binary_entropy(torch.tensor(acc)[:, None]))
    assert math.isfinite(value) and value == pytest.approx(expected, rel=1e-4)
    assert float(_binary_entropy(torch.zeros(3, 1))) == pytest.approx(_entropy(0.0), rel=5e-3)  # 1.25e-4, not 0
    assert float(_binary_entropy(torch.ones(3, 1))) == pytest.approx(_entropy(1.0), rel=5e-3)


# -- resizing --------------------------------------------------------------------------------------------------


def test_resize_to_the_same_size_is_the_identity():
    images = torch.rand(2, 3, 8, 8)
    assert resize(images, 8) is images


def test_resize_shrinks_with_antialiasing():
    """Columns 0, 4, 8, 12 of a 16-wide image are 1: shrinking ×4 with a triangle filter of half-width 4 px averages
    each output column to the pattern's mean, 1/4, except at the borders where the clipped kernel is renormalised
    (left: (0.625 + 0.375)/3.5 = 2/7, right: 0.625/3.5 = 5/28). Plain bilinear sampling would see only zeros."""
    images = torch.zeros(2, 4, 16, 16)
    images[..., ::4] = 1.0
    small = resize(images, 4)
    assert small.shape == (2, 4, 4, 4)
    expected = torch.tensor([2 / 7, 1 / 4, 1 / 4, 5 / 28]).expand(2, 4, 4, 4)
    assert torch.allclose(small, expected, atol=1e-6)


def test_resize_enlarges_bilinearly_between_pixel_centres():
    """2 → 4 with pixel-centre alignment: output centres at input x = −0.25, 0.25, 0.75, 1.25 → 0, 0.25, 0.75, 1."""
    images = torch.tensor([[0.0, 1.0], [0.0, 1.0]]).expand(1, 3, 2, 2)
    expected = torch.tensor([0.0, 0.25, 0.75, 1.0]).expand(1, 3, 4, 4)
    assert torch.allclose(resize(images, 4), expected, atol=1e-6)


def test_a_ray_pointing_away_from_the_ball_has_zero_length():
    near, far = ray_sphere(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    assert near.item() == 0.0 and far.item() == 0.0


def test_resize_resizes_a_non_square_image_whose_width_already_matches():
    assert resize(torch.zeros(1, 3, 16, 8), 8).shape == (1, 3, 8, 8)
