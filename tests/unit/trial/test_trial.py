"""One SDS trial end to end on the analytic prior: determinism, exact resume, artifacts, NaN handling and the CLI."""

from __future__ import annotations

import json
import math
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


RAMPED = {"reg": {"orientation": [2, 0.0, 0.5, 8]}, "optim": {"lr_grid": [0, 0.03, 0.003, 10]}}


def test_ramped_keys_take_each_steps_value_and_resume_exactly(prior, straight, tmp_path):
    """Step s (1-based in the history) ran with the ramps' values at s − 1, the step index it ran as; the optimiser
    followed the learning-rate ramp; an interrupted trial resumes onto the same values and metrics."""
    cfg = small_config(**RAMPED)
    first = run_trial(cfg, tmp_path / "first", prior=prior)
    orientation, lr = cfg.ramps["reg.orientation"], cfg.ramps["optim.lr_grid"]
    for row in first.history:
        assert row["ramp.reg.orientation"] == orientation.at(row["step"] - 1)
        assert row["ramp.optim.lr_grid"] == lr.at(row["step"] - 1)
    assert [row["ramp.reg.orientation"] for row in first.history[:3]] == [0.0, 0.0, 0.0]
    assert first.history[-1]["ramp.reg.orientation"] == 0.5
    groups = torch.load(tmp_path / "first" / "checkpoints" / "step_000010" / "state.pt", weights_only=False)
    grid = next(g for g in groups["optim"]["param_groups"] if g["name"] == "grid")
    assert grid["lr"] == pytest.approx(0.03 + (0.003 - 0.03) * 0.9)  # the value of the last step run, index 9
    assert _without_timing(first.history) != _without_timing(straight[0].history)  # the ramps changed the run

    with pytest.raises(Interrupted):
        run_trial(small_config(**RAMPED), tmp_path / "cut", StopAfterCheckpoint(5), prior=prior)
    resumed = run_trial(
        small_config(**RAMPED), tmp_path / "cut", prior=prior, resume_from=latest_checkpoint(tmp_path / "cut")
    )
    assert _without_timing(resumed.history) == _without_timing(first.history[5:])
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


def test_sparsity_regulariser_is_threestudios_and_enters_the_loss(prior, tmp_path):
    """reg.sparsity · mean(sqrt(opacity² + 0.01)): logged as reg_sparsity, bounded by its values at opacity 0 and
    1, and the logged loss is the SDS loss plus every weighted regulariser."""
    cfg = small_config(steps=2, reg={"sparsity": 2.0, "orientation": 0.5, "opacity_entropy": 0.25})
    steps = Steps()
    run_trial(cfg, tmp_path, steps, prior=prior)
    for row in steps.rows.values():
        assert 0.1 <= row["reg_sparsity"] <= math.sqrt(1.01)
        regs = 2.0 * row["reg_sparsity"] + 0.5 * row["reg_orientation"] + 0.25 * row["reg_opacity_entropy"]
        assert row["loss"] == pytest.approx(row["loss_sds"] + regs, rel=1e-5)
    assert "reg_sparsity" not in run_trial(small_config(steps=1), tmp_path / "off", prior=prior).history[0]


# -- NaN from the prior -------------------------------------------------------------------------------------------


class NaNOn(AnalyticPrior):
    """The analytic prior on the same image bank, whose ε̂ turns NaN in its denoiser calls number `calls` (1-based;
    one call per SDS step): everywhere, or in `elements` elements of the first image only."""

    def __init__(self, base: AnalyticPrior, calls: range, elements: int | None = None) -> None:
        r = base.resolution
        super().__init__(((base.bank + 1) / 2).view(-1, 3, r, r), base.captions, base.device)
        self.calls, self.nan_calls, self.elements = 0, calls, elements

    def predict_noise(self, z_t, t, emb):
        self.calls += 1
        eps = super().predict_noise(z_t, t, emb)
        if self.calls not in self.nan_calls:
            return eps
        if self.elements is None:
            return eps * float("nan")
        flat = eps.clone().flatten()
        flat[: self.elements] = float("nan")
        return flat.view_as(eps)


class Steps(TrialCallback):
    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}

    def on_step(self, step, metrics):
        self.rows[step] = metrics


def _nan_config(**sds):
    """Three steps of patience, a checkpoint at every step."""
    return small_config(
        steps=6, checkpoint_every=1, eval={**SMALL["eval"], "every": 1}, sds={"nonfinite_patience": 3, **sds}
    )


def test_a_prior_that_stays_nan_fails_the_trial_after_its_patience(prior, tmp_path):
    """ε̂ all NaN from step 2 on: steps 2 and 3 train on a zero SDS gradient (logged as nonfinite = 1), step 4 is
    the third in a row and fails before its update, so the last checkpoint (step 3) is finite."""
    steps = Steps()
    with pytest.raises(
        FloatingPointError,
        match=r"^prior prediction became non-finite \(100% of ε̂ at step 4; "
        r"above 1% for 3 steps in a row\)$",
    ):
        run_trial(_nan_config(), tmp_path, steps, prior=NaNOn(prior, range(2, 100)))
    assert [steps.rows[s]["nonfinite"] for s in (1, 2, 3)] == [0.0, 1.0, 1.0]
    assert all(math.isfinite(v) for row in steps.rows.values() for v in row.values())
    state = torch.load(latest_checkpoint(tmp_path) / "state.pt", weights_only=False)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["field"].values())


def test_the_count_of_non_finite_steps_survives_a_resume(prior, tmp_path):
    """Interrupted after step 2 (one non-finite step counted) and resumed: the trial still fails at step 4, as the
    uninterrupted one does, not at step 5 with a count started afresh."""
    nan_prior = NaNOn(prior, range(2, 100))
    with pytest.raises(Interrupted):
        run_trial(_nan_config(), tmp_path, StopAfterCheckpoint(2), prior=nan_prior)
    assert torch.load(latest_checkpoint(tmp_path) / "state.pt", weights_only=False)["nonfinite_streak"] == 1
    with pytest.raises(FloatingPointError, match=r"at step 4; above 1% for 3 steps in a row\)$"):
        run_trial(_nan_config(), tmp_path, prior=nan_prior, resume_from=latest_checkpoint(tmp_path))


def test_a_burst_shorter_than_the_patience_and_stray_elements_are_survived(prior, tmp_path):
    """NaN everywhere on steps 2–3 (two in a row, patience three), then a single NaN element of 3·32·32 on every
    step after (0.03%, under the 1% tolerance): the trial finishes, finite, and logs the fraction it zeroed."""
    bursts = NaNOn(prior, range(2, 4))
    steps = Steps()
    run_trial(_nan_config(), tmp_path / "burst", steps, prior=bursts)
    assert [steps.rows[s]["nonfinite"] for s in range(1, 7)] == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]

    stray = NaNOn(prior, range(1, 100), elements=1)
    steps = Steps()
    result = run_trial(_nan_config(), tmp_path / "stray", steps, prior=stray)
    assert result.steps == 6
    assert all(row["nonfinite"] == pytest.approx(1 / (3 * 32 * 32), rel=1e-4) for row in steps.rows.values())
    state = torch.load(latest_checkpoint(tmp_path / "stray") / "state.pt", weights_only=False)
    assert all(torch.isfinite(v).all() for v in state["field"].values())


def test_nan_loss_raises_naming_the_step(prior, tmp_path):
    """Through the Jacobian ablation nothing is zeroed (a NaN would flow back through the UNet's Jacobian anyway):
    the trial stops at the first NaN step."""
    nan_prior = NaNOn(prior, range(3, 100))
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


@pytest.mark.parametrize("loss", ["csd", "nfsd"])
def test_cli_run_with_another_loss_finishes_and_records_which_ran(loss, tmp_path):
    """On the default toy-world prior, tracked: the console and the run's tags say which loss ran."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    args = ["run", "--steps", "2", "--out", str(tmp_path / "run"), "--tracking-uri", uri, *TINY_RUN]
    args += set_args(device="cpu", eval__every=2, checkpoint_every=2, sds__loss=loss)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"sds: loss {loss}@1, schedule anneal@2, weighting sds@1" in result.output
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("df-sweep-run").experiment_id])[0]
    assert run.info.status == "FINISHED" and run.data.params["sds.loss"] == loss
    assert run.data.tags["df.component.loss"] == f"{loss}@1"
    assert [m.value for m in client.get_metric_history(run.info.run_id, "nonfinite")] == [0.0, 0.0]


def test_an_unknown_negative_prompt_is_refused_before_loading(tmp_path):
    result = CliRunner().invoke(
        app, ["run", "--no-tracking", "--out", str(tmp_path), *set_args(sds__loss="nfsd", sds__negative_prompt="ugly")]
    )
    assert result.exit_code == 2
    said = "error: the command line: sds.negative_prompt: 'ugly' is not known to the toyworld prior"
    assert result.output.startswith(said)
    assert result.output.count("\n") == 1


def test_cli_resume_without_checkpoint_is_a_one_line_error(tmp_path):
    result = CliRunner().invoke(app, ["run", "--resume", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: --resume: {tmp_path} holds no run to continue"
    assert not any(tmp_path.iterdir())  # the write check leaves nothing behind


def test_the_configs_optimiser_settings_win_over_the_checkpoints(tmp_path):
    """What lets a PBT trial continue another's checkpoint with a perturbed learning rate: the checkpoint brings
    the weights and Adam's moments, the config its learning rates, betas and eps."""
    from dreamfusion.config.files import build_trial_config
    from dreamfusion.trial.state import TrialState, load_checkpoint, save_checkpoint

    base = {"nerf": {"size": "tiny"}, "render": {"background": "learned"}}
    saved = TrialState(build_trial_config(base, "saved"), torch.device("cpu"))
    for p in saved.field.parameters():
        p.grad = torch.ones_like(p)
    saved.optim.step()
    checkpoint = save_checkpoint(saved, tmp_path)
    optim = {"lr_grid": 0.06, "lr_mlp": 0.002, "lr_background": 0.05, "betas": [0.8, 0.9], "eps": 1e-8}
    loaded = TrialState(build_trial_config({**base, "optim": optim}, "loaded"), torch.device("cpu"))
    load_checkpoint(loaded, checkpoint)
    groups = {g["name"]: g for g in loaded.optim.param_groups}
    assert [groups[n]["lr"] for n in ("grid", "mlp", "background")] == [0.06, 0.002, 0.05]
    assert all(g["betas"] == (0.8, 0.9) and g["eps"] == 1e-8 for g in groups.values())
    first = next(iter(saved.field.parameters()))
    moment = loaded.optim.state[next(iter(loaded.field.parameters()))]["exp_avg"]
    assert torch.equal(moment, saved.optim.state[first]["exp_avg"])
