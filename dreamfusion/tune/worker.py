"""The worker side of a sweep: the Tune function trainable that runs one trial on a Ray worker, with its prior
cached per worker process (only its codec part when the prior is shared: the rest is the node's prior service),
its evals reported to Tune with their checkpoints, and Tune's checkpoint restored when Ray retries or
`df-sweep resume` restores the trial."""

from __future__ import annotations

import functools
import logging
import os
import posixpath
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamfusion.config.schema import PriorConfig, ScoringConfig, TrialConfig
from dreamfusion.console.progress import eval_line, trial_line
from dreamfusion.console.table import run_name
from dreamfusion.errors import ConfigError
from dreamfusion.priors.base import Part, Prior, load_prior, resolve_device
from dreamfusion.scoring.metrics import Scorer, load_scorer
from dreamfusion.serving.served import ServedPrior
from dreamfusion.serving.service import connect
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.artifacts import fetch_init, looks_like_run_id
from dreamfusion.tracking.callback import TrackingCallback, TrialTracker
from dreamfusion.tracking.runs import CONFIG_FAILURE, MAX_TAG_VALUE
from dreamfusion.tracking.schema import (
    CONFIG_FAILURE_TAG,
    DIVERGED_TAG,
    FAILURE_TAG,
    INIT_RUN_TAG,
    NODE_TAG,
)
from dreamfusion.tracking.store import MLFLOW_DB_LOGGER, open_store
from dreamfusion.trial.loop import TrialCallback, TrialInfo, TrialResult, run_trial
from dreamfusion.tune.pbt import record_perturbation


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled values; shipped once per sweep through Ray's object store."""

    spec: SweepSpec
    tracker: TrialTracker


@functools.lru_cache(maxsize=1)
def _prior_and_scorer(prior_json: str, scoring_json: str, device: str, part: Part) -> tuple[Prior, Scorer]:
    """Loaded once per worker process and reused by its later trials (Tune reuses the actors)."""
    prior = load_prior(PriorConfig.model_validate_json(prior_json), device, part)
    return prior, load_scorer(ScoringConfig.model_validate_json(scoring_json), resolve_device(device), prior)


def trial_prior(cfg: TrialConfig, threads: int) -> tuple[Prior, Scorer]:
    """The trial's prior and scorer: loaded in this worker, or (shared) its codec part here and the rest served by
    the prior service of this node and GPU, connected anew for each attempt (a retry may follow its death)."""
    shared = cfg.prior.placement == "shared"
    prior, scorer = _prior_and_scorer(
        cfg.prior.model_dump_json(), cfg.scoring.model_dump_json(), cfg.device, "codec" if shared else "all"
    )
    return (ServedPrior(prior, connect(cfg.prior, threads)) if shared else prior), scorer


def prior_loads() -> int:
    """Priors this process has loaded: reported with every result, to show that the cache holds."""
    return _prior_and_scorer.cache_info().misses


class TuneReporter(TrialCallback):
    """Reports each eval to Tune with the checkpoint saved at it, and prints it as one line, which reaches the
    driver's log (`ray job logs` on a cluster). The final eval is reported only at the end, once the final renders
    are written and logged, because a scheduler may stop the trial inside a report."""

    def __init__(self, steps: int, label: str) -> None:
        self.steps, self.label = steps, label
        self.final_checkpoint: Path | None = None
        self.started: Callable[[int], None] | None = None  # told the step the trial starts at (PBT's record)
        self.clock = time.perf_counter()

    def on_start(self, cfg: TrialConfig, start_step: int, info: TrialInfo) -> None:
        if self.started is not None:
            self.started(start_step)

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        line = eval_line(step, self.steps, time.perf_counter() - self.clock, metrics)
        print(trial_line(self.label, line), flush=True)
        if step >= self.steps:
            self.final_checkpoint = checkpoint
        else:
            _report(step, metrics, checkpoint)

    def on_end(self, result: TrialResult) -> None:
        _report(result.steps, result.metrics, self.final_checkpoint)


def _report(step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
    from ray import tune

    tune.report(
        {**metrics, "step": step, "prior_loads": prior_loads(), "worker_pid": os.getpid()},
        checkpoint=tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None,
    )


@dataclass(frozen=True)
class Restore:
    """Where this attempt of a trial starts: the checkpoint directory Tune restores it from (None for a fresh
    start), the restore point "<Ray job>/<checkpoint>" (the same for a retry from the same checkpoint on any node,
    different after `df-sweep resume`, a new job), and the trial whose checkpoint it is (another trial's after a
    PBT exploit)."""

    path: Path | None
    point: str
    source_trial: str | None


@contextmanager
def _restored_checkpoint() -> Iterator[Restore]:
    import ray
    from ray import tune

    job = ray.get_runtime_context().get_job_id()
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield Restore(None, f"{job}/start", None)
        return
    # Tune keeps a trial's checkpoints in its trial directory, which is named by the trial id (tuner._trial_id).
    source = posixpath.basename(posixpath.dirname(checkpoint.path.rstrip("/")))
    with checkpoint.as_directory() as path:
        yield Restore(Path(path), f"{job}/{posixpath.basename(checkpoint.path)}", source)


def sweep_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable: one trial of the sweep, on a worker."""
    import ray
    from ray import tune

    threads = max(1, int(ctx.spec.resources.cpu))
    torch.set_num_threads(threads)
    sys.unraisablehook = quiet_stop_hook
    # What a trial prints reaches the driver's log: its eval lines, not Ray's line per saved or restored checkpoint.
    for name in ("ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # nor MLflow's traceback of a database error it then raises: the raise fails the trial, which Tune reports in
    # one line on the driver (the traceback stays in the trial's error.txt)
    logging.getLogger(MLFLOW_DB_LOGGER).setLevel(logging.CRITICAL)
    values = ctx.spec.trial_values(config)
    trial = tune.get_context()
    trial_id, name = trial.get_trial_id(), run_name(values)
    cfg = _config_or_none(ctx, values, trial_id, name)
    if cfg is None:
        return
    # A fresh worker imports MLflow and opens the store while it loads the prior: the two overlap.
    store = threading.Thread(target=_open_store_quietly, args=(ctx.tracker.uri,), name="open-store")
    store.start()
    prior, scorer = trial_prior(cfg, threads)
    store.join()
    tags = {NODE_TAG: ray.get_runtime_context().get_node_id()}
    if cfg.init_from and looks_like_run_id(cfg.init_from):
        tags[INIT_RUN_TAG] = cfg.init_from
    reporter = TuneReporter(cfg.steps, f"{trial_id} {name}")
    out = Path(trial.get_trial_dir())
    with (
        ctx.tracker.run(trial_id, name, continue_existing=True, then=reporter, tags=tags) as callback,
        _restored_checkpoint() as restore,
        _no_second_divergence(callback, restore.point),
    ):
        if ctx.spec.tune.scheduler == "pbt":
            mutated = {k: values[k] for k in ctx.spec.tune.pbt.mutate}
            reporter.started = functools.partial(record_perturbation, callback, mutated, trial_id, restore.source_trial)
        init = fetch_init(cfg, ctx.tracker.uri, out / "init") if restore.path is None else None
        run_trial(cfg, out, callback, prior, scorer, restore.path, init)


def _config_or_none(ctx: TrialContext, values: dict[str, Any], trial_id: str, name: str) -> TrialConfig | None:
    """The trial's config; or None when its values fail the trial schema (a draw the spec's check did not meet, or
    code changed before a resume), with the trial's run ended FAILED, tagged `df.config_failure`, and one line
    printed. A config fails the same way every time, and Tune retries a trial that raises (forever under
    `max_failures: -1`) and offers no public error it would not retry: so the trial returns, reporting nothing,
    which Tune takes as ended, and the driver reads the run's tag to count it as failed."""
    try:
        return ctx.spec.trial_config(values, f"trial {trial_id}")
    except ConfigError as exc:
        reason = f"{exc}; {CONFIG_FAILURE}"
    try:
        with ctx.tracker.run(trial_id, name, continue_existing=True, tags={CONFIG_FAILURE_TAG: reason[:MAX_TAG_VALUE]}):
            raise ConfigError(reason)
    except ConfigError:
        pass  # recorded on the run by `run`
    print(trial_line(f"{trial_id} {name}", reason), flush=True)
    return None


def quiet_stop_hook(unraisable: Any) -> None:
    """Ray stops a finished trial's actor with SIGTERM, whose handler raises SystemExit. Landing in a weakref or
    garbage-collector callback, that exit cannot be raised, and Python would print it as a traceback into the
    driver's log for an ordinary stop (seen on resumed sweeps). Other unraisable errors are printed as usual."""
    if not isinstance(unraisable.exc_value, SystemExit):
        sys.__unraisablehook__(unraisable)


def _open_store_quietly(uri: str) -> None:
    try:
        open_store(uri)
    except Exception:  # the trial's own opening of its run, next, reports what is wrong with the store
        pass


@contextmanager
def _no_second_divergence(callback: TrackingCallback, start: str) -> Iterator[None]:
    """A trial is deterministic from its checkpoint (weights, optimiser and RNG state), so a retry of an attempt
    that went non-finite would diverge again at the same step: within one launch, Tune's `max_failures` retry
    then fails at once with the first attempt's reason instead of spending the compute. The record is a tag of
    the trial's MLflow run, which every node sees (trial directories are node-local). Other failures are retried."""
    if callback.previous_tags.get(DIVERGED_TAG) == start:
        reason = callback.previous_tags.get(FAILURE_TAG, "").removeprefix(f"{FloatingPointError.__name__}: ")
        raise FloatingPointError(
            f"{reason} (not run again: the previous attempt diverged from the same checkpoint and RNG state)"
        )
    try:
        yield
    except FloatingPointError:
        callback.set_tag(DIVERGED_TAG, start)
        raise
