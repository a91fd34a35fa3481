"""Pieces of the SDS step a threestudio-parity config changes: t per view, and the albedo-only warm-up."""

from __future__ import annotations

import torch

from dreamfusion.config.schema import RenderConfig, ShadingMix, TimestepConfig
from dreamfusion.sds.schedules import make_schedule
from dreamfusion.trial.step import choose_shading, draw_timesteps

ALPHAS = torch.linspace(0.9999, 0.005, 1000)


def test_one_t_per_step_or_one_per_view():
    schedule = make_schedule(TimestepConfig(schedule="uniform"), 100, ALPHAS, seed=0)
    g = torch.Generator().manual_seed(0)
    shared = draw_timesteps(schedule, 0, 4, False, g)
    assert shared.shape == (4,) and shared.dtype == torch.long and len(set(shared.tolist())) == 1
    per_view = draw_timesteps(schedule, 1, 4, True, g)

    replay = torch.Generator().manual_seed(0)
    assert int(shared[0]) == schedule(0, replay)  # one draw...
    assert per_view.tolist() == [schedule(1, replay) for _ in range(4)]  # ...then one per view, in view order
    assert len(set(per_view.tolist())) > 1


def test_albedo_warmup_then_the_shading_mix():
    """Steps before `albedo_warmup` are albedo without touching the generator; after it the mix is drawn (here a
    mix that never picks albedo)."""
    cfg = RenderConfig(albedo_warmup=3, shading=ShadingMix(albedo=0, lambertian=1, textureless=1))
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    assert [choose_shading(cfg, step, g) for step in range(3)] == ["albedo"] * 3
    assert torch.equal(g.get_state(), before)
    after = [choose_shading(cfg, step, g) for step in range(3, 200)]
    assert set(after) == {"lambertian", "textureless"}
