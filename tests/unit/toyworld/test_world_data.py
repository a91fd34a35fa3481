"""The new world's training data: spotted renders carry their spot only where the camera sees the front, colour
renders are also captioned without their colour, every true caption of an image counts as its positive for the
CLIP, and the card's pixel readers of samples find the spot and the colour of ground-truth renders."""

from __future__ import annotations

import pytest
import torch

from dreamfusion.nerf.cameras import make_cameras
from dreamfusion.toyworld import world
from dreamfusion.toyworld.card_phenomena import sample_colours, shows_spot
from dreamfusion.toyworld.data import VIEWS, colour_unspecified, generate
from dreamfusion.toyworld.train import describes


def lit(caption: world.Caption, azimuths: list[float]) -> torch.Tensor:
    cams = make_cameras(
        torch.full((len(azimuths),), 15.0), torch.tensor(azimuths), torch.full((len(azimuths),), 2.5), 40.0
    )
    return world.render_caption(caption, cams, 32, cams.position * 1.5)


def test_spot_shows_from_the_front_only():
    spotted = lit(world.Caption("cube", "green", spot=True), [0.0, 30.0, 150.0, 180.0])
    assert shows_spot(spotted).tolist() == [True, True, False, False]
    assert not shows_spot(lit(world.Caption("cube", "blue"), [0.0])).any()  # a lit blue face is not black


def test_sample_colours_of_true_renders():
    for index, colour in enumerate(world.COLOURS):
        assert sample_colours(lit(world.Caption("torus", colour), [20.0])) == [index]
    assert sample_colours(torch.ones(1, 3, 32, 32)) == [None]


@pytest.mark.parametrize("bias_all", [False, True])
def test_front_bias_applies_to_objects_with_a_front(bias_all):
    """At bias 1 every spotted view is a front view; the plain objects are seen from all round (a trial's views)
    unless the bias is applied to every object."""
    data = generate(
        seed=2, colour_views=4, shape_views=4, spot_views=4, resolution=4, front_bias=1.0, bias_all=bias_all, log=None
    )
    spotted = torch.tensor([world.parse_prompt(data.prompts[int(k)]).spot for k in data.prompt_index])
    front = data.view_index == VIEWS.index("front")
    assert bool(front[spotted].all())
    assert bool(front[~spotted].all()) == bias_all
    if not bias_all:  # 168 uniform views: about a quarter each side and back
        assert 0.15 < float((data.view_index[~spotted] == VIEWS.index("back")).float().mean()) < 0.35


@pytest.fixture(scope="module")
def data():
    return generate(seed=1, colour_views=1, shape_views=1, spot_views=2, resolution=8, log=None)


def test_generated_data_holds_every_rendered_prompt(data):
    assert len(data) == 36 + 36 * 2 + 6
    assert colour_unspecified("a red cube") == "a coloured cube"
    assert colour_unspecified("a red cube with a spot") == "a red cube with a spot"
    index = torch.tensor([0, 36])  # the first colour render (a red cube) and the first spotted one
    captions = data.captions(index, torch.tensor([False, False]), torch.tensor([True, True]))
    assert captions == ["a coloured cube", "a red cube with a spot"]


def test_every_true_caption_is_a_positive(data):
    index = torch.tensor([0, 36])  # a red cube, a red cube with a spot
    label = data.labels_of(index)[0]
    other = next(v for v in ("front", "side", "back") if v != label)
    captions = ["a red cube", "a coloured cube", f"a red cube, {label} view", f"a red cube, {other} view"]
    captions += ["a red cube with a spot", "a green cube"]
    assert describes(captions, data, index).tolist() == [
        [True, False],
        [True, False],
        [True, False],
        [False, False],
        [False, True],
        [False, False],
    ]
