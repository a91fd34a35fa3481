"""A spec as a Ray Tune `Tuner`: the search space, the scheduler and search algorithm, the trainable with its
resources, and where Tune keeps its state."""

from __future__ import annotations

from typing import Any

from dreamfusion.console.table import short_names
from dreamfusion.sweep.space import BRANCH_PREFIX, dependents
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tune.searchers import build_scheduler, build_search
from dreamfusion.tune.worker import TrialContext, sweep_trial

#: Checkpoints kept per trial under PBT: Ray warns that two or fewer lose checkpoints before they are copied (seen
#: here: a copy failed with "does not exist on storage anymore" at two).
PBT_CHECKPOINTS = 4


def _trial_id(trial: Any) -> str:
    """Trial names and directories are the trial id: short paths, whatever the sampled values are."""
    return trial.trial_id


def trainable(ctx: TrialContext) -> Any:
    from ray import tune

    return tune.with_resources(tune.with_parameters(sweep_trial, ctx=ctx), ctx.spec.resources.ray_resources())


def build_tuner(ctx: TrialContext, sweep_dir: str, name: str) -> Any:
    from ray import tune

    spec, t = ctx.spec, ctx.spec.tune
    search, param_space = build_search(spec)
    tune_config = tune.TuneConfig(
        metric=t.metric,
        mode=t.mode,
        num_samples=t.num_samples,
        scheduler=build_scheduler(spec),
        search_alg=search,
        reuse_actors=True,
        trial_name_creator=_trial_id,
        trial_dirname_creator=_trial_id,
    )
    return tune.Tuner(
        trainable(ctx),
        param_space=param_space,
        tune_config=tune_config,
        run_config=_run_config(spec, sweep_dir, name),
    )


def config_path(spec: SweepSpec, key: str) -> str:
    """Where an unconditional key sits in a trial's Tune config, as Tune's progress table looks it up: at the
    top, or (Ray's variant generator and HyperOpt) inside its own `when:KEY` branch when others depend on it."""
    nested = spec.tune.search not in ("optuna", "bohb") and dependents(spec.space, key)
    return f"{BRANCH_PREFIX}{key}/{key}" if nested else key


def _run_config(spec: SweepSpec, sweep_dir: str, name: str) -> Any:
    from ray import tune

    from dreamfusion.tune.monitor import SweepMonitor

    reporter = tune.CLIReporter(
        metric_columns={spec.tune.metric: spec.tune.metric, "step": "step"},
        # Tune's "current best trial" line looks every column up without a default: a key a condition switches
        # off in that trial would end the sweep with a KeyError, so conditional keys are left to the run names.
        parameter_columns={
            config_path(spec, k): n for k, n in short_names(spec.varied).items() if spec.space[k].when is None
        },
        max_report_frequency=30,
        # Tune's sort of the finished trials by the metric compares None with numbers where a trial ended without
        # one (a trial that failed on its config returns without a result) and stops the whole fit: unsorted.
        sort_by_metric=False,
    )
    # Renders and final artifacts go to MLflow; copying each trial's folder into storage at every checkpoint
    # (Tune's default) would only duplicate them and the trial's own checkpoints. Under PBT the checkpoint a trial
    # is to copy must outlive the copying trial's restart while its owner goes on saving (PBT's own saves count).
    return tune.RunConfig(
        name=name,
        storage_path=sweep_dir,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=PBT_CHECKPOINTS if spec.tune.scheduler == "pbt" else 1),
        sync_config=tune.SyncConfig(sync_artifacts_on_checkpoint=False),
        progress_reporter=reporter,
        callbacks=[SweepMonitor(spec.num_trials())],
        verbose=1,
    )
