"""The dry run's cost estimate runs a loss's extra denoiser images: a step is measured with SDS's two images per
view, and each image more that a loss runs (`Loss.prior_calls_per_step`) adds one measured `denoiser_ms`."""

from __future__ import annotations

import math

import pytest

from dreamfusion.console.cost import StepTime, cost_lines, estimate, table, trial_seconds
from dreamfusion.sweep.spec import SweepSpec

LOSSES = ["sds", "ism", "sdi"]


def _spec(space: dict) -> SweepSpec:
    return SweepSpec.model_validate({"name": "losses", "base": {"steps": 10}, "space": space})


@pytest.mark.parametrize(
    ("loss", "options", "ratio"),
    [("sds", {}, 1.0), ("nfsd", {}, 1.05), ("ism", {}, 1.3), ("ism", {"sds.xs_inv_steps": 2}, 1.15),
     ("sdi", {}, 2.0), ("sdi", {"sds.inversion_n_steps": 4}, 1.4)],
)  # fmt: skip
def test_a_step_costs_the_measured_sds_step_plus_a_denoiser_image_per_extra_image(loss, options, ratio):
    """With no eval or turntable time, a trial's time is proportional to its step: 100 ms for SDS's 2 images per
    view, + 5 ms for each image more (NFSD 3, ISM 5 + 1 + 2 = 8, SDI 2·10 + 2 = 22, fewer with fewer steps)."""
    times = StepTime(step_ms=100.0, eval_view_ms=0.0, frame_ms=0.0, denoiser_ms=5.0)
    spec = _spec({"sds.loss": {"grid": [loss]}})
    base = trial_seconds(spec.trial_config({"sds.loss": "sds"}), times)
    scaled = trial_seconds(spec.trial_config({"sds.loss": loss, **options}), times)
    assert base is not None and scaled is not None and math.isclose(scaled / base, ratio)


def test_without_a_measured_denoiser_time_only_sds_is_estimated():
    times = StepTime(step_ms=100.0, eval_view_ms=0.0, frame_ms=0.0)
    spec = _spec({"sds.loss": {"grid": LOSSES}})
    assert trial_seconds(spec.trial_config({"sds.loss": "sds"}), times) is not None
    assert trial_seconds(spec.trial_config({"sds.loss": "ism"}), times) is None


def test_the_dry_run_estimate_of_a_loss_grid_sums_each_loss_at_its_own_cost():
    """On the shipped table (toy prior, CPU), where `denoiser_ms` is measured: ISM and SDI trials cost more than an
    SDS trial, and the sweep's estimate is their sum."""
    times = table()[0][("toyworld", "small", "cpu")]
    assert times is not None and times.denoiser_ms is not None
    spec = _spec({"sds.loss": {"grid": LOSSES}})
    each = {loss: trial_seconds(spec.trial_config({"sds.loss": loss}), times) for loss in LOSSES}
    assert each["sds"] is not None and each["ism"] is not None and each["sdi"] is not None
    assert each["sds"] < each["ism"] < each["sdi"]
    found = estimate(spec)
    assert found is not None and math.isclose(found.trial_s, each["sds"] + each["ism"] + each["sdi"])
    assert cost_lines(spec)[0].startswith("cost: ~")
