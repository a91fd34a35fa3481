"""The failure-mode detectors on ground-truth renders, where the answer is known: one spot is one front wherever it
faces, two opposite spots are Janus; the true colour is not over-saturated and a saturated one is; each world
colour is classified as itself. Thresholds are checked against the world's colours they were chosen from."""

from __future__ import annotations

import pytest
import torch

from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import EvalViews
from dreamfusion.nerf.cameras import Cameras, ring_cameras
from dreamfusion.nerf.render import Lighting, RenderOutput, render
from dreamfusion.toyworld import world
from dreamfusion.toyworld.detectors import (
    BACK_ANGLE,
    FRONT_AREA,
    ColourChoice,
    Janus,
    Saturation,
    janus_reading,
    saturation,
)
from dreamfusion.toyworld.ground_truth import SPOT_TOLERANCE, GroundTruth

RES = 32
RING = ring_cameras(8, 15.0, 2.5, 40.0)  # the default eval ring: azimuths 0, 45, …, −45


def views_of(field: world.ShapeField, cams: Cameras = RING) -> EvalViews:
    """The eval views a trial whose field is exactly `field` would hand its evaluators."""

    def render_field(c: Cameras, lighting: Lighting, need_normals: bool) -> RenderOutput:
        with torch.no_grad():
            return render(field, world.white_background, c, RES, 96, lighting, need_normals=need_normals)

    lights = cams.position * 1.5
    colour = render_field(cams, Lighting("lambertian", lights), True)
    return EvalViews(cams, colour, colour, lights, render_field, RES, no_mesh)


def no_mesh() -> None:
    raise AssertionError("the 2D detectors read the eval renders, never the mesh")


def final(evaluator: type, prompt: str, field: world.ShapeField) -> dict[str, float]:
    cfg = TrialConfig(prompt=prompt, device="cpu")
    assert evaluator.applies(cfg)
    return evaluator(cfg, None).final(views_of(field))


# -- prompts --------------------------------------------------------------------------------------------------------


def test_every_prompt_parses_back_to_itself():
    prompts = world.all_prompts()
    assert len(prompts) == len(set(prompts)) == 36 + 36 + 6 + 6
    for prompt in prompts:
        caption = world.parse_prompt(prompt + ", back view")
        assert caption is not None and caption.prompt == prompt
    assert world.parse_prompt("a red cube with a spot") == world.Caption("cube", "red", spot=True)
    assert world.parse_prompt("a coloured torus") == world.Caption("torus", None, any_colour=True)
    assert world.parse_prompt("a torus").textureless and not world.parse_prompt("a coloured torus").textureless
    for outside in ("a coloured cube with a spot", "a cube with a spot", "a red cube with a dot", "a coloured"):
        assert world.parse_prompt(outside) is None
    assert world.view_of("a red cube with a spot, back view") == "back" and world.view_of("a red cube") is None


def test_each_prompt_is_retrieved_among_its_own_family():
    assert world.prompt_family("a red cube") == world.colour_prompts()
    assert world.prompt_family("a red cube with a spot, side view") == world.spot_prompts()
    assert world.prompt_family("a coloured cube") == world.coloured_prompts()
    assert world.prompt_family("a cube") == world.shape_prompts()


# -- the front bias -------------------------------------------------------------------------------------------------


def test_no_bias_draws_the_trials_own_cameras():
    from dreamfusion.config.schema import CameraConfig
    from dreamfusion.nerf.cameras import sample_cameras

    a = world.world_cameras(16, torch.Generator().manual_seed(3), 0.0)
    b = sample_cameras(CameraConfig(), 16, torch.Generator().manual_seed(3))
    assert torch.equal(a.c2w, b.c2w)


@pytest.mark.parametrize("bias", [0.0, 0.5, 0.8])
def test_front_bias_sets_the_share_of_head_on_and_back_views(bias):
    cams = world.world_cameras(20000, torch.Generator().manual_seed(0), bias)
    head_on = (cams.azimuth.abs() <= world.FRONT_HALF_WIDTH).float().mean()
    back = (cams.azimuth.abs() >= 135).float().mean()
    assert float(head_on) == pytest.approx(bias + (1 - bias) * 30 / 360, abs=0.015)
    assert float(back) == pytest.approx((1 - bias) / 4, abs=0.015)
    distance = cams.position.norm(dim=-1)
    assert distance.min() >= 2.2 - 1e-5 and distance.max() <= 2.8 + 1e-5
    # the density the analytic prior weights by integrates to 1 and matches the share drawn head-on
    grid = torch.linspace(-180, 180, 36001)
    density = world.azimuth_density(grid, bias)
    assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=1e-3)
    inside = grid.abs() <= world.FRONT_HALF_WIDTH
    assert float(torch.trapezoid(density[inside], grid[inside])) == pytest.approx(float(head_on), abs=0.015)


# -- Janus ----------------------------------------------------------------------------------------------------------


def test_spot_tolerance_passes_only_the_spot():
    """Every world colour, and a pixel half spot half colour, lies beyond the tolerance from the spot's black."""
    spot = torch.tensor(world.SPOT_COLOUR)
    for rgb in [*world.COLOURS.values(), world.WHITE]:
        assert float((0.5 * torch.tensor(rgb) + 0.5 * spot - spot).norm()) > SPOT_TOLERANCE


@pytest.mark.parametrize("shape", list(world.SHAPES))
def test_a_true_spotted_object_has_one_front_at_azimuth_zero(shape):
    out = final(Janus, f"a red {shape} with a spot", world.ShapeField(shape, world.COLOURS["red"], spots=(0.0,)))
    assert out["gt_janus"] == 0.0 and out["gt_janus_area"] == 0.0  # not one spot pixel seen from behind
    assert out["gt_spot_area"] == 1.0 and out["gt_front_azimuth"] == 0.0  # the ring's first view is head-on


@pytest.mark.parametrize("shape", list(world.SHAPES))
def test_a_two_fronted_object_is_janus(shape):
    two = world.ShapeField(shape, world.COLOURS["blue"], spots=(0.0, 180.0))
    out = final(Janus, f"a blue {shape} with a spot", two)
    assert out["gt_janus"] == 1.0
    assert out["gt_janus_area"] == pytest.approx(1.0, abs=0.2)  # the back spot, seen head-on from behind


@pytest.mark.parametrize("azimuth", [90.0, -135.0])
def test_one_spot_facing_anywhere_is_one_front(azimuth):
    """Without view-dependent prompts nothing fixes where the front is: one spot facing sideways or backwards is
    one front, not Janus, and its azimuth is reported."""
    field = world.ShapeField("sphere", world.COLOURS["green"], spots=(azimuth,))
    out = final(Janus, "a green sphere with a spot", field)
    assert out["gt_janus"] == 0.0 and out["gt_front_azimuth"] == azimuth


def test_janus_reading_by_hand():
    azimuth = torch.tensor([0.0, 45, 90, 135, -180, -135, -90, -45])
    one = torch.tensor([40, 20, 2, 0, 0, 0, 2, 20])
    assert janus_reading(one, azimuth, 40.0) == {
        "gt_janus": 0.0,
        "gt_janus_area": 0.0,
        "gt_spot_area": 1.0,
        "gt_front_azimuth": 0.0,
    }
    faint_back = torch.tensor([40, 20, 2, 0, 9, 0, 2, 20])  # 9/40 < FRONT_AREA behind
    assert janus_reading(faint_back, azimuth, 40.0)["gt_janus"] == 0.0
    assert 9 / 40 < FRONT_AREA <= 10 / 40
    back = torch.tensor([40, 20, 2, 10, 0, 0, 2, 20])  # 10/40 at 135°: the back half starts there
    assert BACK_ANGLE == 135.0 and janus_reading(back, azimuth, 40.0)["gt_janus"] == 1.0
    assert janus_reading(torch.zeros(8), azimuth, 40.0)["gt_spot_area"] == 0.0


# -- saturation and colour --------------------------------------------------------------------------------------------


def test_saturation_by_hand():
    rgb = torch.tensor([[0.56, 0.16, 0.76], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.25]]).view(4, 3, 1, 1)
    expected = torch.tensor([0.6 / 0.76, 0.0, 0.0, 1.0]).view(4, 1, 1)
    assert torch.allclose(saturation(rgb), expected)


def test_the_true_colour_is_not_over_saturated_and_magenta_is():
    purple = world.COLOURS["purple"]
    truth = final(Saturation, "a purple sphere", world.ShapeField("sphere", purple))
    assert truth["gt_saturation_excess"] == pytest.approx(0.0, abs=1e-6)
    # edge pixels blend with the white background, so the mean lies a little under purple's own 0.79
    assert 0.7 < truth["gt_saturation"] < (0.76 - 0.16) / 0.76
    magenta = final(Saturation, "a purple sphere", world.ShapeField("sphere", (0.7, 0.0, 0.9)))  # saturation 1
    assert 0.15 < magenta["gt_saturation_excess"] < 1 - 0.7


def test_the_spot_does_not_count_towards_saturation_or_colour():
    spotted = world.ShapeField("cube", world.COLOURS["yellow"], spots=(0.0,))
    assert final(Saturation, "a yellow cube with a spot", spotted)["gt_saturation_excess"] == pytest.approx(0, abs=1e-6)

    def colour_error(prompt: str, field: world.ShapeField) -> float:
        return GroundTruth(TrialConfig(prompt=prompt, device="cpu"), None).evaluate(views_of(field))["gt_colour_error"]

    # the plain cube's error is its edges blending with white (0.03); counting the spot would add 0.07 more
    plain = colour_error("a yellow cube", world.ShapeField("cube", world.COLOURS["yellow"]))
    assert colour_error("a yellow cube with a spot", spotted) < plain + 0.01


@pytest.mark.parametrize("index,colour", list(enumerate(world.COLOURS)))
def test_each_world_colour_is_chosen_as_itself(index, colour):
    field = world.ShapeField("cone", world.COLOURS[colour])
    assert final(ColourChoice, "a coloured cone", field) == {"gt_colour_index": float(index), "gt_colour_open": 1.0}
    assert final(ColourChoice, f"a {colour} cone", field) == {"gt_colour_index": float(index), "gt_colour_open": 0.0}
    assert ColourChoice.metrics["gt_colour_index"].levels[index] == colour  # recorded on the run for reports

    def colour_error(prompt: str) -> float:
        return GroundTruth(TrialConfig(prompt=prompt, device="cpu"), None).evaluate(views_of(field))["gt_colour_error"]

    assert colour_error("a coloured cone") == colour_error(f"a {colour} cone")  # any of the six is right


def test_detectors_apply_to_their_prompts_only():
    def applies(cls, prompt):
        return cls.applies(TrialConfig(prompt=prompt, device="cpu"))

    assert applies(Janus, "a red cube with a spot") and not applies(Janus, "a red cube")
    assert applies(Saturation, "a red cube") and not applies(Saturation, "a coloured cube")
    assert applies(ColourChoice, "a coloured cube") and not applies(ColourChoice, "a cube")
