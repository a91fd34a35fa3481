"""Growing a field into a larger one: exact on nested grids (the maths of trilinear interpolation and of identity
layers after a ReLU), bitwise at the same size, refused when the target is smaller, and alive (the new parts learn)."""

from __future__ import annotations

import pytest
import torch

from dreamfusion.config.schema import NerfConfig
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.field import NeRFField, level_resolutions
from dreamfusion.nerf.grow import grow_field

torch.set_num_threads(1)

SOURCE = NerfConfig(grid_levels=2, grid_base_resolution=9, grid_max_resolution=17, grid_features=2, mlp_width=16,
                    mlp_depth=1)  # fmt: skip
#: Every target level's R − 1 a multiple of its source level's r − 1 (16 = 2·8, 32 = 2·16), one more level, twice
#: the features and the width, one more hidden layer.
NESTED = NerfConfig(grid_levels=3, grid_base_resolution=17, grid_max_resolution=65, grid_features=4, mlp_width=32,
                    mlp_depth=2)  # fmt: skip


def trained_like(cfg: NerfConfig, seed: int) -> NeRFField:
    """A field with weights far from their init, so that a copy that missed a part would show."""
    torch.manual_seed(seed)
    field = NeRFField(cfg)
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0, 0.5)
    return field


def points(n: int = 4096) -> torch.Tensor:
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_nested_grids_grow_exactly():
    assert level_resolutions(NESTED)[:2] == [17, 33]
    source, target = trained_like(SOURCE, 0), trained_like(NESTED, 1)
    grow_field(source, target)
    x = points()
    with torch.no_grad():
        (s_sigma, s_albedo), (t_sigma, t_albedo) = source(x), target(x)
    assert torch.allclose(t_sigma, s_sigma, rtol=1e-4, atol=1e-4)
    assert torch.allclose(t_albedo, s_albedo, atol=1e-5)


def test_same_size_copies_every_weight_bitwise():
    source, target = trained_like(SOURCE, 0), trained_like(SOURCE, 1)
    grow_field(source, target)
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_preset_sizes_grow_closely():
    """small (8, 16, 32) → medium (16, 25, 40, 64): not nested, so equal at the target's grid points only."""
    source, target = trained_like(NerfConfig(size="small"), 0), trained_like(NerfConfig(size="medium"), 1)
    grow_field(source, target)
    with torch.no_grad():
        (s_sigma, s_albedo), (t_sigma, t_albedo) = source(points()), target(points())
    assert (t_albedo - s_albedo).abs().mean() < 0.05
    assert (t_sigma - s_sigma).abs().mean() < 0.1 * s_sigma.abs().mean()


def test_the_new_parts_receive_gradients():
    """Zeroed connections next to fresh random values: not a saddle where nothing new can ever move."""
    target = trained_like(NESTED, 1)
    grow_field(trained_like(SOURCE, 0), target)
    sigma, albedo = target(points())
    (sigma.sum() + albedo.sum()).backward()
    output = target.decoder[-1]
    assert output.weight.grad[:, SOURCE.mlp_width :].abs().sum() > 0  # from the new hidden units
    first = target.decoder[0]
    assert first.weight.grad[: SOURCE.mlp_width, SOURCE.grid_features : NESTED.grid_features].abs().sum() > 0


@pytest.mark.parametrize(
    "change, key",
    [
        ({"mlp_width": 8}, "nerf.mlp_width"),
        ({"grid_features": 1}, "nerf.grid_features"),
        ({"grid_max_resolution": 12, "grid_base_resolution": 4}, "nerf.grid_max_resolution"),
        ({"blob_radius": 0.3}, "nerf.blob_radius"),
    ],
)
def test_a_target_that_cannot_hold_the_source_is_refused(change, key):
    target = NeRFField(SOURCE.model_copy(update=change))
    with pytest.raises(ConfigError, match=f"^{key}: "):
        grow_field(trained_like(SOURCE, 0), target)
