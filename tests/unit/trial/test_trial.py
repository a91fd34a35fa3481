"""One SDS trial end to end on the analytic prior: determinism, exact resume, artifacts, NaN handling and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from sweep_helpers import TINY_RUN, set_args
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.config.files import load_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.toyworld.analytic import AnalyticPrior, load_analytic_prior
from dreamfusion.tracking.schema import TIMING_METRICS
from dreamfusion.trial.evaluation import Evaluation
from dreamfusion.trial.loop import TrialCallback, TrialResult, run_trial
from dreamfusion.trial.state import TrialState, latest_checkpoint, load_checkpoint

torch.set_num_threads(1)

SMALL = dict(
    prompt="a red cube",
    steps=10,
    device="cpu",
    checkpoint_every=5,
    prior="analytic",
    nerf={"size": "tiny"},
    render={"resolution": 16, "samples_per_ray": 16, "views_per_step": 1},
    eval={"views": 2, "turntable_frames": 2, "every": 5},
)


def small_config(**changes) -> TrialConfig:
    return TrialConfig.model_validate({**SMALL, **changes})


@pytest.fixture(scope="module")
def prior() -> AnalyticPrior:
    """Rendering the analytic prior's image bank is the slow part of these tests: once per module."""
    return load_analytic_prior("cpu")


@pytest.fixture(scope="module")
def straight(prior, tmp_path_factory) -> tuple[TrialResult, Path]:
    out = tmp_path_factory.mktemp("straight")
    return run_trial(small_config(), out, prior=prior), out


def _without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if k not in TIMING_METRICS} for row in history]


def _final_state(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "step_000010" / "state.pt", weights_only=False)


def _assert_same_weights(a: dict, b: dict) -> None:
    for part in ("field", "background"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), f"{part}.{key} differs"


# -- determinism --------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_metrics_and_weights(prior, straight, tmp_path):
    first, first_out = straight
    again = run_trial(small_config(), tmp_path, prior=prior)
    assert [row["step"] for row in first.history] == list(range(1, 11))
    assert _without_timing(again.history) == _without_timing(first.history)
    assert again.metrics == first.metrics
    _assert_same_weights(_final_state(tmp_path), _final_state(first_out))


def test_different_seed_differs(prior, straight, tmp_path):
    first, first_out = straight
    other = run_trial(small_config(seed=1), tmp_path, prior=prior)
    assert _without_timing(other.history) != _without_timing(first.history)
    a, b = _final_state(tmp_path)["field"], _final_state(first_out)["field"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_shared_eval_pass_scores_exactly_as_separate_renders(prior, straight):
    """`speed.shared_eval_pass` renders the eval ring's shadings from one pass: same metrics and renders, bit for
    bit, as a render per shading."""
    _, out = straight
    results = []
    for shared in (True, False):
        cfg = small_config(speed={"shared_eval_pass": shared})
        state = TrialState(cfg, prior.device)
        load_checkpoint(state, latest_checkpoint(out))
        results.append(Evaluation(cfg, load_scorer(cfg.scoring, prior.device, prior), prior.device)(state))
    (metrics, renders), (metrics_apart, renders_apart) = results
    assert metrics == metrics_apart and torch.equal(renders, renders_apart)
    assert {"gt_iou", "gt_colour_error", "clip_score"} <= metrics.keys()


# -- resume -------------------------------------------------------------------------------------------------------


class Interrupted(Exception):
    pass


class StopAfterCheckpoint(TrialCallback):
    """Simulates a killed trial: raises once the checkpoint of `step` has been written."""

    def __init__(self, step: int) -> None:
        self.step, self.checkpoints, self.starts = step, [], []

    def on_start(self, cfg, start_step, info):
        self.starts.append(start_step)

    def on_eval(self, step, metrics, render_path, checkpoint):
        self.checkpoints.append(checkpoint)
        if step == self.step:
            raise Interrupted


def test_resumed_trial_continues_exactly(prior, straight, tmp_path):
    """Interrupted after step 5 (with steps = 10, so every schedule sees the same total), then resumed."""
    first, first_out = straight
    stopper = StopAfterCheckpoint(5)
    with pytest.raises(Interrupted):
        run_trial(small_config(), tmp_path, stopper, prior=prior)
    ckpt = latest_checkpoint(tmp_path)
    assert ckpt is not None and ckpt.name == "step_000005" and stopper.checkpoints == [ckpt]

    resumer = StopAfterCheckpoint(-1)
    resumed = run_trial(small_config(), tmp_path, resumer, prior=prior, resume_from=ckpt)
    assert resumer.starts == [5]
    assert [row["step"] for row in resumed.history] == list(range(6, 11))
    assert _without_timing(resumed.history) == _without_timing(first.history[5:])
    assert resumed.metrics == first.metrics and resumed.steps == 10
    _assert_same_weights(_final_state(tmp_path), _final_state(first_out))


def test_resume_at_the_last_step_only_evaluates(prior, straight, tmp_path):
    first, first_out = straight
    resumed = run_trial(small_config(), tmp_path, prior=prior, resume_from=latest_checkpoint(first_out))
    assert resumed.history == [] and resumed.steps == 10
    assert resumed.metrics == first.metrics


# -- artifacts ----------------------------------------------------------------------------------------------------


def test_artifacts_are_written(straight):
    result, out = straight
    views, gif = out / "final" / "views.png", out / "final" / "turntable.gif"
    assert result.artifacts["views"] == views and result.artifacts["turntable"] == gif
    with Image.open(views) as im:
        assert im.format == "PNG" and min(im.size) >= 32
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == SMALL["eval"]["turntable_frames"]
    assert (out / "renders" / "step_000005.png").is_file() and (out / "renders" / "step_000010.png").is_file()
    assert json.loads((out / "final" / "metrics.json").read_text()) == result.metrics
    assert {"clip_score", "clip_r_precision", "gt_iou", "gt_colour_error"} <= result.metrics.keys()


def test_config_yaml_round_trips(straight):
    _, out = straight
    assert load_trial_config(out / "config.yaml") == small_config()


def test_only_the_latest_checkpoint_is_kept(straight):
    _, out = straight
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step_000010"]
    ckpt = latest_checkpoint(out)
    assert load_trial_config(ckpt / "config.yaml") == small_config()
    state = torch.load(ckpt / "state.pt", weights_only=False)
    assert state["step"] == 10 and {"field", "background", "optim", "generator"} <= state.keys()


# -- NaN from the prior -------------------------------------------------------------------------------------------


class NaNAfter(AnalyticPrior):
    """The analytic prior on the same image bank, whose ε̂ turns NaN from its `first_nan`-th denoiser call on."""

    def __init__(self, base: AnalyticPrior, first_nan: int) -> None:
        r = base.resolution
        super().__init__(((base.bank + 1) / 2).view(-1, 3, r, r), base.captions, base.device)
        self.calls, self.first_nan = 0, first_nan

    def predict_noise(self, z_t, t, emb):
        self.calls += 1
        eps = super().predict_noise(z_t, t, emb)
        return eps * float("nan") if self.calls >= self.first_nan else eps


def test_nan_prediction_stops_the_trial_before_the_update(prior, tmp_path):
    """A non-finite ε̂ must fail the trial (the sweep marks it FAILED) rather than be silently zeroed by sds()'s
    nan_to_num, and the update of that step must not reach the field."""
    nan_prior = NaNAfter(prior, first_nan=2)
    cfg = small_config(steps=3, checkpoint_every=1, eval={**SMALL["eval"], "every": 1})
    with pytest.raises(FloatingPointError, match=r"prior prediction became non-finite \(100% of ε̂\) at step 2$"):
        run_trial(cfg, tmp_path, prior=nan_prior)
    state = torch.load(latest_checkpoint(tmp_path) / "state.pt", weights_only=False)
    assert state["step"] == 1
    assert all(torch.isfinite(v).all() for v in state["field"].values())


def test_nan_loss_raises_naming_the_step(prior, tmp_path):
    """Through the Jacobian ablation no nan_to_num guards the loss: the trial stops at the first NaN step."""
    nan_prior = NaNAfter(prior, first_nan=3)
    with pytest.raises(FloatingPointError, match=r"loss became nan at step 3$"):
        run_trial(small_config(steps=5, sds={"jacobian": True}), tmp_path, prior=nan_prior)


# -- the CLI, end to end ------------------------------------------------------------------------------------------


def test_cli_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    args = [
        "run",
        "--prompt",
        "a blue cone",
        "--steps",
        "4",
        "--out",
        str(out),
        "--no-tracking",
        *TINY_RUN,
        *set_args(device="cpu", eval__every=2, checkpoint_every=2),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "prior: toyworld" in result.output  # the default
    assert (out / "final" / "views.png").is_file() and (out / "final" / "turntable.gif").is_file()
    cfg = load_trial_config(out / "config.yaml")
    assert cfg.prompt == "a blue cone" and cfg.steps == 4 and cfg.nerf.size == "tiny"
    assert latest_checkpoint(out).name == "step_000004"


def test_cli_resume_without_checkpoint_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["run", "--resume", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --resume: no checkpoint under {tmp_path / 'checkpoints'}"
