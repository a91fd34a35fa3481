"""One SDS trial: optimise a NeRF against a frozen prior, evaluate, checkpoint, and report through a callback.

Every sweep trial is `run_trial`. It knows nothing of Ray or MLflow: the sweep layer plugs them in as a
`TrialCallback`. All randomness (field init aside, seeded globally) comes from one `torch.Generator` that is
checkpointed, so the same seed gives the same metrics and a resumed trial continues exactly.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dreamfusion import images
from dreamfusion.config.files import to_yaml
from dreamfusion.config.schema import TrialConfig
from dreamfusion.evaluators.base import Metric, declared_metrics
from dreamfusion.export.weights import find_weights, load_weights
from dreamfusion.priors.base import Prior, load_prior, resolve_device
from dreamfusion.scoring.metrics import Scorer, load_scorer
from dreamfusion.timing import phase
from dreamfusion.trial.evaluation import Evaluation
from dreamfusion.trial.hooks import before_step
from dreamfusion.trial.state import TrialState, load_checkpoint, save_checkpoint
from dreamfusion.trial.step import SDSStep


class TrialCallback:
    """Hooks the sweep layer implements; each default does nothing."""

    def on_start(self, cfg: TrialConfig, start_step: int, info: TrialInfo) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        """Called after each evaluation; `checkpoint` is the directory saved at this step, if any."""

    def on_end(self, result: TrialResult) -> None: ...


@dataclass
class TrialInfo:
    """What ran, in words, for the run's tags: the loaded models and every component's `name@version`."""

    prior: str
    scorer: str
    components: dict[str, str]  # kind → "name@version" (evaluators: comma-separated)
    prior_hash: str = ""  # sha256 of the prior's weights as loaded
    device: str = ""  # the device the trial ran on, with its model name
    metrics: dict[str, Metric] = field(default_factory=dict)  # what the evaluators log, as declared (with direction)


@dataclass
class TrialResult:
    metrics: dict[str, float]  # final eval metrics
    artifacts: dict[str, Path]  # name → file in the trial's out dir
    steps: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # per-step metrics of this process's steps


def run_trial(
    cfg: TrialConfig,
    out: Path,
    callback: TrialCallback | None = None,
    prior: Prior | None = None,
    scorer: Scorer | None = None,
    resume_from: Path | None = None,
    init_weights: Path | None = None,
) -> TrialResult:
    """Run (or continue, from `resume_from`) one trial, writing renders, checkpoints and final artifacts to `out`.
    A trial with `init_from` starts from `init_weights`, the local file its run id was fetched to, or else from the
    path `init_from` names; a resumed one from its checkpoint alone."""
    callback = callback or TrialCallback()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prior = prior or load_prior(cfg.prior, cfg.device)
    scorer = scorer or load_scorer(cfg.scoring, resolve_device(cfg.device), prior)
    prior.text_embedding(cfg.prompt)  # a closed-vocabulary prior fails here, before any work, on a prompt it lacks
    step = SDSStep(cfg, prior)
    state = TrialState(cfg, prior.device, step.loss)
    evaluation = Evaluation(cfg, scorer, prior.device)
    if resume_from is not None:
        load_checkpoint(state, resume_from)
    elif cfg.init_from is not None:
        state.start_from(load_weights(find_weights(init_weights or Path(cfg.init_from))))
    (out / "config.yaml").write_text(to_yaml(cfg))
    parts = components(step, prior, scorer, evaluation)
    info = TrialInfo(
        prior.describe(),
        scorer.describe(),
        parts,
        prior.fingerprint(),
        device_name(prior.device),
        declared_metrics(evaluation.evaluators),
    )
    callback.on_start(cfg, state.step, info)
    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    render_path = out / "renders" / "none.png"
    while state.step < cfg.steps:
        before_step(cfg, state.step)
        with phase("step"):
            step_metrics = step(state)
        history.append({"step": state.step, **step_metrics})
        callback.on_step(state.step, step_metrics)
        if state.step % cfg.eval.every == 0 or state.step == cfg.steps:
            with phase("eval"):
                metrics, render_path = _evaluate(evaluation, state, out)
            last = state.step == cfg.steps
            with phase("checkpoint"):
                ckpt = save_checkpoint(state, out) if state.step % cfg.checkpoint_every == 0 or last else None
            callback.on_eval(state.step, metrics, render_path, ckpt)
    if not metrics:  # resumed at the last step: nothing trained, evaluate once for the final numbers
        metrics, render_path = _evaluate(evaluation, state, out)
    with phase("final"):
        metrics = {**metrics, **evaluation.final()}
        artifacts = evaluation.write_final(state, out, metrics, render_path)
    result = TrialResult(metrics, artifacts, state.step, time.perf_counter() - started, history)
    callback.on_end(result)
    return result


def _evaluate(evaluation: Evaluation, state: TrialState, out: Path) -> tuple[dict[str, float], Path]:
    metrics, renders = evaluation(state)
    path = images.save_grid(renders, out / "renders" / f"step_{state.step:06d}.png", state.cfg.eval.views)
    return metrics, path


def device_name(device: torch.device) -> str:
    """`cuda:0 (NVIDIA H200)`, `cpu (AMD EPYC 7B13, 2 threads)`: what a run's timings were measured on."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    model = next(
        (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")), platform.processor()
    )
    return f"cpu ({model or platform.machine()}, {torch.get_num_threads()} threads)"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:  # not Linux
        return []


def components(step: SDSStep, prior: Prior, scorer: Scorer, evaluation: Evaluation) -> dict[str, str]:
    """Which registered component of each kind the trial ran, as `name@version`."""
    parts = [prior.component, type(scorer), type(step.schedule), type(step.loss), type(step.loss.weight)]
    found = {c.kind: c.label() for c in parts}
    found["evaluator"] = ",".join(type(e).label() for e in evaluation.evaluators)
    return found
