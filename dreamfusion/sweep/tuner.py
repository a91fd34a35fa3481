"""A spec as a Ray Tune `Tuner`: the search space, the scheduler and search algorithm, the trainable with its
resources, and where Tune keeps its state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.sweep.table import short_names
from dreamfusion.sweep.worker import TrialContext, sweep_trial


def search_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    domains: dict[str, Callable[..., Any]] = {
        "grid": lambda v: tune.grid_search(list(v)),
        "choice": lambda v: tune.choice(list(v)),
        "uniform": lambda v: tune.uniform(*v),
        "loguniform": lambda v: tune.loguniform(*v),
        "randint": lambda v: tune.randint(*v),
        "quniform": lambda v: tune.quniform(*v),
    }
    return {key: domains[dim.kind](dim.argument) for key, dim in spec.space.items()}


def _trial_id(trial: Any) -> str:
    """Trial names and directories are the trial id: short paths, whatever the sampled values are."""
    return trial.trial_id


def trainable(ctx: TrialContext) -> Any:
    from ray import tune

    return tune.with_resources(tune.with_parameters(sweep_trial, ctx=ctx), ctx.spec.resources.ray_resources())


def build_tuner(ctx: TrialContext, sweep_dir: str, name: str) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    spec, t = ctx.spec, ctx.spec.tune
    scheduler = (
        ASHAScheduler(
            time_attr="step",
            grace_period=t.grace_period,
            reduction_factor=t.reduction_factor,
            max_t=t.max_t or spec.max_steps(),
        )
        if t.scheduler == "asha"
        else FIFOScheduler()
    )
    # The concurrency cap goes to the generator: Tune ignores TuneConfig.max_concurrent_trials once a
    # BasicVariantGenerator is passed in (which the seed needs).
    search = BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials or 0)
    tune_config = tune.TuneConfig(
        metric=t.metric,
        mode=t.mode,
        num_samples=t.num_samples,
        scheduler=scheduler,
        search_alg=search,
        reuse_actors=True,
        trial_name_creator=_trial_id,
        trial_dirname_creator=_trial_id,
    )
    return tune.Tuner(
        trainable(ctx),
        param_space=search_space(spec),
        tune_config=tune_config,
        run_config=_run_config(spec, sweep_dir, name),
    )


def _run_config(spec: SweepSpec, sweep_dir: str, name: str) -> Any:
    from ray import tune

    reporter = tune.CLIReporter(
        metric_columns={spec.tune.metric: spec.tune.metric, "step": "step"},
        parameter_columns=short_names(spec.varied),
        max_report_frequency=30,
        sort_by_metric=True,
    )
    # Renders and final artifacts go to MLflow; copying each trial's folder into storage at every checkpoint
    # (Tune's default) would only duplicate them and the trial's own checkpoints.
    return tune.RunConfig(
        name=name,
        storage_path=sweep_dir,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        sync_config=tune.SyncConfig(sync_artifacts_on_checkpoint=False),
        progress_reporter=reporter,
        verbose=1,
    )
