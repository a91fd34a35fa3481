"""A validated sweep spec → a Ray Tune run of `run_trial`, tracked in MLflow; and its resume and status.

Driver side: check the environment (resources against the cluster, the tracking store), connect to Ray or start
an embedded one, create the experiment and the parent run, run the `Tuner`, then close what a killed worker left
open and print a summary. Worker side: `sweep_trial` builds the trial config from the base and the sampled
values, runs the trial under a tracking callback, reports each eval to Tune with its checkpoint, and resumes from
Tune's checkpoint when Ray retries or restores the trial.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import posixpath
import socket
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from dreamfusion.config import ConfigError, PriorConfig
from dreamfusion.priors import Prior, load_prior
from dreamfusion.priors.base import resolve_device
from dreamfusion.scoring import Scorer, load_scorer
from dreamfusion.sweep.spec import Resources, SweepSpec, run_name, short_names
from dreamfusion.tracking import (
    DIVERGED_TAG,
    FAILURE_TAG,
    NODE_TAG,
    TrackingCallback,
    TrialTracker,
    check_reachable,
    close_runs,
    end_run,
    open_experiment,
    reopen_run,
    resolve_uri,
    runs_link,
    sqlite_path,
    start_parent_run,
)
from dreamfusion.trial import TrialCallback, TrialResult, run_trial

#: What a launch stores beside Tune's experiment state, so that `resume` and `status` need only the name.
LAUNCH_FILE = "df_sweep.json"
DEFAULT_STORAGE = "ray_results"
DEFAULT_UI = "http://127.0.0.1:5000"
#: Ray's session dir adds ~64 characters of socket path (`session_<date>_<pid>/sockets/plasma_store`) to its
#: temp dir, and a unix socket path must fit in 107 bytes.
MAX_RAY_TEMP_DIR = 40
ADDRESS_TIMEOUT_S = 3.0

Echo = Callable[[str], None]


# ---------------------------------------------------------------------------------------------------------------
# What a launch leaves on disk


@dataclass(frozen=True)
class Launch:
    """One launch of a sweep: where Tune keeps it, and where MLflow tracks it."""

    spec: dict[str, Any]
    experiment_dir: str
    tracker: TrialTracker

    @property
    def sweep(self) -> SweepSpec:
        return SweepSpec.model_validate(self.spec)

    def save(self) -> None:
        fs, path = filesystem(self.experiment_dir)
        fs.create_dir(path)
        with fs.open_output_stream(posixpath.join(path, LAUNCH_FILE)) as out:
            out.write(json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, experiment_dir: str) -> Launch:
        fs, path = filesystem(experiment_dir)
        with fs.open_input_stream(posixpath.join(path, LAUNCH_FILE)) as stored:
            data = json.loads(stored.read())
        return cls(data["spec"], data["experiment_dir"], TrialTracker(**data["tracker"]))


def is_uri(location: str | Path) -> bool:
    """s3://, gs://, file://, or any other filesystem pyarrow (and so Tune) opens by URI."""
    return "://" in str(location)


def storage_root(storage: str | Path | None) -> str:
    """Where Tune keeps the sweeps: a URI as given (a `Path` would fold `s3://` into `s3:/`), else an absolute
    local path."""
    location = str(storage or DEFAULT_STORAGE)
    return location.rstrip("/") if is_uri(location) else str(Path(location).expanduser().absolute())


def join(location: str, *parts: str) -> str:
    """`location/parts`, keeping a URI's `?query` (an S3 endpoint, say) at the end where pyarrow reads it."""
    base, mark, query = location.partition("?") if is_uri(location) else (location, "", "")
    return posixpath.join(base, *parts) + mark + query


def filesystem(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path on it): the way Tune itself opens its `storage_path`."""
    import pyarrow.fs

    if is_uri(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), str(Path(location).expanduser().absolute())


def _exists(location: str) -> bool:
    import pyarrow.fs

    fs, path = filesystem(location)
    return fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def _subdirs(location: str) -> list[str]:
    import pyarrow.fs

    fs, path = filesystem(location)
    found = fs.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    return sorted(info.base_name for info in found if info.type == pyarrow.fs.FileType.Directory)


def _launches(sweep_dir: str) -> list[str]:
    """The launch directories of one sweep, oldest first (their names are their start times)."""
    return [join(sweep_dir, d) for d in _subdirs(sweep_dir) if _exists(join(sweep_dir, d, LAUNCH_FILE))]


def find_launch(name: str, storage: str | Path | None) -> str:
    """The newest launch of sweep `name` under the storage root (or `name` itself, if it is a launch dir)."""
    if _exists(join(name, LAUNCH_FILE)):
        return name if is_uri(name) else str(Path(name).absolute())
    root = storage_root(storage)
    launches = _launches(join(root, name))
    if not launches:
        known = ", ".join(sweep_names(root)) or "none"
        raise ConfigError(f"{name}: no sweep of that name under {root} (sweeps there: {known})")
    return launches[-1]


def sweep_names(root: str) -> list[str]:
    return [name for name in _subdirs(root) if _launches(join(root, name))]


# ---------------------------------------------------------------------------------------------------------------
# Preflight and Ray


def preflight(spec: SweepSpec, uri: str, address: str | None) -> None:
    """Environment checks that need no cluster: the tracking store answers, and (for an embedded Ray) this
    machine can hold a trial. A cluster's nodes are checked once connected, in `ray_session`."""
    check_reachable(uri)
    if address is None and not _ray_initialized():
        check_resources(spec.resources, [local_node()])


def local_node() -> dict[str, float]:
    """What an embedded Ray on this machine offers."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def check_resources(resources: Resources, nodes: list[dict[str, float]]) -> None:
    """Fail fast when no node can ever hold one trial: Tune would otherwise leave it pending forever."""
    need = resources.ray_resources()
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("CPU", 0.0), n.get("GPU", 0.0)), default={})
    have = ", ".join(f"{k}={largest.get(k, 0.0):g}" for k in need)
    raise ConfigError(f"resources: no node can ever run a trial needing "
                      f"{', '.join(f'{k}={v:g}' for k, v in need.items())}; the largest node has {have}")


def ray_temp_dir(root: str | Path) -> Path:
    """Ray's temp files under a local results root, unless that path would push its sockets past 107 bytes."""
    preferred = Path(root) / ".ray"
    if not is_uri(root) and len(str(preferred)) <= MAX_RAY_TEMP_DIR:
        return preferred
    return Path("/tmp") / f"dfs-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


def _ray_initialized() -> bool:
    import ray

    return ray.is_initialized()


@contextmanager
def ray_session(address: str | None, root: str, resources: Resources,
                runtime_env: dict[str, Any] | None = None) -> Iterator[None]:
    """Use the Ray already initialised in this process, connect to `address`, or start an embedded one; checks
    the live nodes before anything runs, and shuts down only what it began."""
    import ray

    if ray.is_initialized():
        check_cluster(resources, root)
        yield
        return
    if address is None:
        start_local_ray(root, runtime_env)
    else:
        connect_ray(address, runtime_env)
    try:
        check_cluster(resources, root)
        yield
    finally:
        ray.shutdown()


def start_local_ray(root: str | Path, runtime_env: dict[str, Any] | None = None) -> None:
    """An embedded Ray on this machine: no dashboard, no usage stats, temp files by the results."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    node = local_node()
    ray.init(num_cpus=int(node["CPU"]), num_gpus=int(node["GPU"]), include_dashboard=False,
             _temp_dir=str(ray_temp_dir(root)), configure_logging=True,
             logging_level=logging.ERROR, log_to_driver=False, runtime_env=runtime_env)


def connect_ray(address: str, runtime_env: dict[str, Any] | None = None) -> None:
    """An existing cluster (`auto`, `HOST:PORT`, `ray://HOST:PORT`); no cluster there is a user mistake."""
    import ray

    _check_listening(address)
    try:
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False,
                 runtime_env=with_project_code(runtime_env))
    except (ConnectionError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({reason})") from None


def with_project_code(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The job's runtime env plus this `dreamfusion` package as a `py_modules` zip, so that a cluster's workers
    run the driver's code whatever their image holds: a node the autoscaler adds later cannot be asked
    beforehand, and Ray uploads the zip once per code version (cached by its hash). A job that ships code
    itself (`ray job submit --working-dir .`) is left as it is: Ray refuses to merge a second copy."""
    import dreamfusion

    env = dict(runtime_env or {})
    submitted = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("runtime_env") or {}
    if any(key in source for key in ("working_dir", "py_modules") for source in (env, submitted)):
        return env
    return {**env, "py_modules": [str(Path(dreamfusion.__file__).parent)],
            "excludes": [*env.get("excludes", []), "__pycache__"]}


def check_cluster(resources: Resources, root: str) -> None:
    """What the live nodes must offer before anything runs: room for one trial, and storage they all share."""
    nodes = _alive_nodes()
    check_resources(resources, nodes)
    check_shared_storage(root, len(nodes))


def check_shared_storage(root: str, nodes: int) -> None:
    """Ray stopped syncing trial directories to the head in 2.7: on a cluster, checkpoints written to a node's
    own disk are lost to a trial retried on another node and to `df-sweep resume`."""
    if nodes > 1 and not is_uri(root):
        raise ConfigError(f"--storage {root}: a local path on a {nodes}-node Ray cluster; pass storage every node "
                          f"reaches: s3://BUCKET/PATH, gs://BUCKET/PATH, or file://{root} if every node mounts it")


def _check_listening(address: str) -> None:
    """A quick TCP look at HOST:PORT: Ray itself retries an address nothing listens on for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # `auto`: Ray looks the address up on this machine and fails fast itself
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: nothing answers there ({exc.strerror or exc})") from None


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


# ---------------------------------------------------------------------------------------------------------------
# Worker side


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled values; shipped once per sweep through Ray's object store."""

    spec: SweepSpec
    tracker: TrialTracker


@functools.lru_cache(maxsize=1)
def _prior_and_scorer(prior_json: str, scoring_model: str, device: str) -> tuple[Prior, Scorer]:
    """Loaded once per worker process and reused by its later trials (Tune reuses the actors)."""
    prior = load_prior(PriorConfig.model_validate_json(prior_json), device)
    return prior, load_scorer(scoring_model, resolve_device(device), prior)


def prior_loads() -> int:
    """Priors this process has loaded: reported with every result, to show that the cache holds."""
    return _prior_and_scorer.cache_info().misses


class TuneReporter(TrialCallback):
    """Reports each eval to Tune with the checkpoint saved at it. The final eval is reported only at the end,
    once the final renders are written and logged, because a scheduler may stop the trial inside a report."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self.final_checkpoint: Path | None = None

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        if step >= self.steps:
            self.final_checkpoint = checkpoint
        else:
            _report(step, metrics, checkpoint)

    def on_end(self, result: TrialResult) -> None:
        _report(result.steps, result.metrics, self.final_checkpoint)


def _report(step: int, metrics: dict[str, float], checkpoint: Path | None) -> None:
    from ray import tune

    tune.report({**metrics, "step": step, "prior_loads": prior_loads(), "worker_pid": os.getpid()},
                checkpoint=tune.Checkpoint.from_directory(str(checkpoint)) if checkpoint else None)


@contextmanager
def _restored_checkpoint() -> Iterator[tuple[Path | None, str]]:
    """The directory of the checkpoint Tune restores this trial from (a retry or a resume; None for a fresh
    start), and the attempt's restore point "<Ray job>/<checkpoint>": the same for a retry from the same
    checkpoint on any node, different after `df-sweep resume` (a new job)."""
    import ray
    from ray import tune

    job = ray.get_runtime_context().get_job_id()
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None, f"{job}/start"
        return
    with checkpoint.as_directory() as path:
        yield Path(path), f"{job}/{posixpath.basename(checkpoint.path)}"


def sweep_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune function trainable: one trial of the sweep, on a worker."""
    import ray
    from ray import tune

    torch.set_num_threads(max(1, int(ctx.spec.resources.cpu)))
    values = {k: config[k] for k in ctx.spec.varied}
    cfg = ctx.spec.trial_config(values)
    prior, scorer = _prior_and_scorer(cfg.prior.model_dump_json(), cfg.scoring.model, cfg.device)
    trial = tune.get_context()
    node = {NODE_TAG: ray.get_runtime_context().get_node_id()}
    with ctx.tracker.run(trial.get_trial_id(), run_name(values), continue_existing=True,
                         then=TuneReporter(cfg.steps), tags=node) as callback, \
            _restored_checkpoint() as (resume_from, start), _no_second_divergence(callback, start):
        run_trial(cfg, Path(trial.get_trial_dir()), callback, prior, scorer, resume_from)


@contextmanager
def _no_second_divergence(callback: TrackingCallback, start: str) -> Iterator[None]:
    """A trial is deterministic from its checkpoint (weights, optimiser and RNG state), so a retry of an attempt
    that went non-finite would diverge again at the same step: within one launch, Tune's `max_failures` retry
    then fails at once with the first attempt's reason instead of spending the compute. The record is a tag of
    the trial's MLflow run, which every node sees (trial directories are node-local). Other failures are retried."""
    if callback.previous_tags.get(DIVERGED_TAG) == start:
        reason = callback.previous_tags.get(FAILURE_TAG, "").removeprefix(f"{FloatingPointError.__name__}: ")
        raise FloatingPointError(f"{reason} (not run again: the previous attempt diverged from the same "
                                 f"checkpoint and RNG state)")
    try:
        yield
    except FloatingPointError:
        callback.set_tag(DIVERGED_TAG, start)
        raise


# ---------------------------------------------------------------------------------------------------------------
# Driver side


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
    scheduler = (ASHAScheduler(time_attr="step", grace_period=t.grace_period, reduction_factor=t.reduction_factor,
                               max_t=t.max_t or spec.max_steps())
                 if t.scheduler == "asha" else FIFOScheduler())
    # The concurrency cap goes to the generator: Tune ignores TuneConfig.max_concurrent_trials once a
    # BasicVariantGenerator is passed in (which the seed needs).
    search = BasicVariantGenerator(random_state=t.seed, max_concurrent=t.max_concurrent_trials or 0)
    tune_config = tune.TuneConfig(
        metric=t.metric, mode=t.mode, num_samples=t.num_samples, scheduler=scheduler, search_alg=search,
        reuse_actors=True, trial_name_creator=_trial_id, trial_dirname_creator=_trial_id)
    return tune.Tuner(trainable(ctx), param_space=search_space(spec), tune_config=tune_config,
                      run_config=_run_config(spec, sweep_dir, name))


def _run_config(spec: SweepSpec, sweep_dir: str, name: str) -> Any:
    from ray import tune

    reporter = tune.CLIReporter(metric_columns={spec.tune.metric: spec.tune.metric, "step": "step"},
                                parameter_columns=short_names(spec.varied), max_report_frequency=30,
                                sort_by_metric=True)
    # Renders and final artifacts go to MLflow; copying each trial's folder into storage at every checkpoint
    # (Tune's default) would only duplicate them and the trial's own checkpoints.
    return tune.RunConfig(name=name, storage_path=sweep_dir,
                          failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                          sync_config=tune.SyncConfig(sync_artifacts_on_checkpoint=False),
                          progress_reporter=reporter, verbose=1)


@dataclass
class TrialRow:
    trial_id: str
    state: str
    values: dict[str, Any]
    metric: float | None
    step: int | None


@dataclass
class Outcome:
    launch: Launch
    rows: list[TrialRow]

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(r.state == "TERMINATED" for r in self.rows)


def launch_sweep(spec: SweepSpec, *, address: str | None = None, tracking_uri: str | None = None,
                 storage: str | Path | None = None, echo: Echo = print,
                 runtime_env: dict[str, Any] | None = None) -> Outcome:
    """Run a whole sweep; user mistakes raise ConfigError before any worker starts or any run is created."""
    uri = resolve_uri(tracking_uri or spec.tracking.uri)
    preflight(spec, uri, address)
    root = storage_root(storage)
    with ray_session(address, root, spec.resources, runtime_env):
        experiment_id = open_experiment(uri, spec.tracking.experiment or spec.name)
        sweep_dir = join(root, spec.name)
        name = _new_launch_name(sweep_dir)
        parent = start_parent_run(uri, experiment_id, spec.name, name, spec.description, _spec_yaml(spec))
        launch = Launch(spec.model_dump(mode="json"), join(sweep_dir, name),
                        TrialTracker(uri, experiment_id, parent, spec.tracking.flush_every))
        launch.save()
        return _run(launch, lambda ctx: build_tuner(ctx, sweep_dir, name), echo)


def resume_sweep(name: str, *, address: str | None = None, storage: str | Path | None = None,
                 echo: Echo = print, runtime_env: dict[str, Any] | None = None) -> Outcome:
    """Continue the newest launch of `name`: finished trials stay finished, errored and unfinished ones go on
    from their last checkpoint, each in its own MLflow run."""
    from ray import tune

    experiment_dir = find_launch(name, storage)
    launch = Launch.load(experiment_dir)
    spec = launch.sweep
    preflight(spec, launch.tracker.uri, address)
    with ray_session(address, storage_root(storage), spec.resources, runtime_env):
        reopen_run(launch.tracker.uri, launch.tracker.parent_run_id)
        return _run(launch, lambda ctx: tune.Tuner.restore(
            experiment_dir, trainable(ctx), resume_unfinished=True, resume_errored=True), echo)


def _run(launch: Launch, make_tuner: Callable[[TrialContext], Any], echo: Echo) -> Outcome:
    """Fit, then make MLflow agree with Tune whatever happened: no run RUNNING, the parent's outcome recorded."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the legacy reporter: one table, not a box per event
    spec, tracker = launch.sweep, launch.tracker
    echo(f"sweep {spec.name}: {spec.num_trials()} trials; tune results in {launch.experiment_dir}; "
         f"mlflow {tracker.uri} (experiment id {tracker.experiment_id})")
    rows: list[TrialRow] | None = None
    try:
        make_tuner(TrialContext(spec, tracker)).fit()
        rows = trial_rows(launch.experiment_dir, spec)
        return Outcome(launch, rows)
    finally:
        rows = rows if rows is not None else _stored_rows(launch)
        finished = None if rows is None else {r.trial_id: r.step or 0 for r in rows if r.state == "TERMINATED"}
        close_runs(tracker.uri, tracker.experiment_id, tracker.parent_run_id, finished,
                   f"interrupted before the trial finished; df-sweep resume {spec.name} continues it")
        end_run(tracker.uri, tracker.parent_run_id, _failure(rows, spec.name))


def _stored_rows(launch: Launch) -> list[TrialRow] | None:
    """The trials as Tune last saved them, when `fit` itself was interrupted (a second Ctrl-C) or failed."""
    try:
        return trial_rows(launch.experiment_dir, launch.sweep)
    except Exception:  # nothing saved yet, or a half-written state: the caller then knows nothing of the trials
        return None


def _failure(rows: list[TrialRow] | None, name: str) -> str | None:
    """Why a launch did not complete, in words that say how to go on; None when every trial finished."""
    resume = f"df-sweep resume {name} continues it"
    if rows is None:
        return f"interrupted; {resume}"
    counts = Counter("errored" if r.state == "ERROR" else "unfinished" for r in rows if r.state != "TERMINATED")
    if not counts:
        return None
    return f"{' and '.join(f'{n} {what}' for what, n in counts.items())} of {len(rows)} trials; {resume}"


def _new_launch_name(sweep_dir: str) -> str:
    """A fresh directory name per launch, its start time: every launch is a parent run of its own."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    candidate, n = stamp, 1
    while _exists(join(sweep_dir, candidate)):
        n += 1
        candidate = f"{stamp}_{n}"
    return candidate


def _spec_yaml(spec: SweepSpec) -> str:
    import yaml

    return yaml.safe_dump(spec.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def trial_rows(experiment_dir: str, spec: SweepSpec) -> list[TrialRow]:
    """The trials of a launch as Tune stored them (readable without a running Ray)."""
    from ray.tune import ExperimentAnalysis

    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.ERROR)  # a trial that has not reported yet is news to no one: no warning for it
    try:
        analysis = ExperimentAnalysis(str(experiment_dir))
    finally:
        tune_logger.setLevel(level)
    rows = []
    for trial in sorted(analysis.trials, key=lambda t: t.trial_id):
        result = trial.last_result or {}
        rows.append(TrialRow(trial.trial_id, trial.status, {k: trial.config.get(k) for k in spec.varied},
                             result.get(spec.tune.metric), result.get("step")))
    return rows


def summary(outcome: Outcome, ui: str = DEFAULT_UI) -> list[str]:
    """The closing lines of a launch: the best trial, where results are, how to look at them."""
    launch, spec = outcome.launch, outcome.launch.sweep
    metric, tracker = spec.tune.metric, launch.tracker
    scored = [r for r in outcome.rows if r.metric is not None]
    lines = []
    if scored:
        best = (max if spec.tune.mode == "max" else min)(scored, key=lambda r: r.metric)
        values = ", ".join(f"{k}={v}" for k, v in best.values.items())
        lines.append(f"best trial: {best.trial_id}  {metric}={best.metric:.4f}  ({values})")
    states = ", ".join(f"{n} {s}" for s, n in Counter(r.state for r in outcome.rows).items())
    lines.append(f"trials: {states}")
    lines.append(f"tune results: {launch.experiment_dir}")
    lines.append(f"mlflow: {tracker.uri}  experiment {spec.tracking.experiment or spec.name!r} "
                 f"(id {tracker.experiment_id}), parent run {tracker.parent_run_id}")
    link_base = ui if sqlite_path(tracker.uri) is not None else tracker.uri
    open_ui = "df-sweep ui, then open " if sqlite_path(tracker.uri) is not None else "open "
    lines.append(f"compare runs: {open_ui}{runs_link(link_base, tracker.experiment_id)}")
    lines.append(f"report: df-sweep report {spec.name} --out report")
    if not outcome.ok:
        lines.append(f"resume: df-sweep resume {spec.name}")
    return lines
