"""Phase timing: nothing is recorded unless a recorder is active, and the phases of a real SDS step lie inside the
step, so the profile `benchmarks/sds_step.py` prints adds up (step ≥ the sum of its phases, by construction)."""

from __future__ import annotations

import time

import torch

from dreamfusion.config.schema import TrialConfig
from dreamfusion.timing import Laps, PhaseTimes, phase
from dreamfusion.toyworld.analytic import AnalyticPrior
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import SDSStep

torch.set_num_threads(1)


def test_phases_are_recorded_only_inside_a_recorder():
    with phase("outside"):
        pass
    Laps()("outside lap")  # no recorder: a no-op, not an error
    with PhaseTimes() as times:
        with phase("sleep"):
            time.sleep(0.02)
    with phase("after"):
        pass
    assert set(times.ms) == {"sleep"}
    assert 20 <= times.ms["sleep"] < 1000
    assert times.cpu_ms["sleep"] < times.ms["sleep"]  # sleeping costs wall time, not CPU time


def test_laps_time_consecutive_parts_of_a_block():
    with PhaseTimes() as times:
        lap = Laps()
        time.sleep(0.01)
        lap("first")
        time.sleep(0.03)
        lap("second")
        lap("second")  # a phase that ran twice accumulates
    assert 10 <= times.ms["first"] < 30 <= times.ms["second"]


def test_the_phases_of_an_sds_step_lie_inside_the_step():
    image = torch.tensor([0.9, 0.1, 0.1]).view(1, 3, 1, 1).expand(1, 3, 16, 16).clone()
    prior = AnalyticPrior(image, ["a red thing"], "cpu")
    cfg = TrialConfig.model_validate(
        dict(
            prompt="a red thing",
            prior="analytic",
            nerf={"size": "tiny"},
            render={"resolution": 16, "samples_per_ray": 16, "views_per_step": 2},
            camera={"view_dependent_prompt": False},
        )
    )
    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    with PhaseTimes() as times:
        for _ in range(3):
            with phase("step"):
                step(state)
    top = ["occupancy", "cameras", "render", "sds", "regularisers", "backward", "optimiser"]
    render = ["render/rays", "render/field", "render/composite", "render/normals", "render/shade"]
    assert set(top + render + ["sds/prior", "step"]) == set(times.ms)
    for clock in (times.ms, times.cpu_ms):
        assert sum(clock[p] for p in top) <= clock["step"]
        assert sum(clock[p] for p in render) <= clock["render"]
        assert clock["sds/prior"] <= clock["sds"]
