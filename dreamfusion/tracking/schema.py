"""The names runs are written and read by: MLflow tags, step metrics and artifact paths. Tracking writes them,
`analysis/` reads them, and nothing else spells them out. The trial's eval metrics are declared by the registered
evaluators that produce them (`dreamfusion.evaluators`); their `name@version` land in the `df.component.*` tags."""

from __future__ import annotations

import re

#: An MLflow run id, as `init_from`, `export` and `--from-run` take one besides a path: 32 lowercase hex digits.
RUN_ID = re.compile(r"[0-9a-f]{32}")


def looks_like_run_id(text: str) -> bool:
    """Read here, not in `artifacts.py`, so that the spec's check (which imports no MLflow) tells an id from a typo."""
    return RUN_ID.fullmatch(text) is not None


# -- tags ----------------------------------------------------------------------------------------------------------
#: A trial run's key within its experiment: Tune's trial id for a sweep, a hash of --out for `df-sweep run`.
TRIAL_KEY_TAG = "df.trial_id"
#: Why a run ended FAILED, in one line.
FAILURE_TAG = "df.failure"
#: On a trial run that failed on its config (its values fail the trial schema): why, in one line. Such a trial is
#: not retried and not resumed; the launch counts it as failed by this tag (see dreamfusion/tune/worker.py).
CONFIG_FAILURE_TAG = "df.config_failure"
#: Where a trial went non-finite from: "<Ray job id>/<checkpoint it started from>" (see dreamfusion/tune/worker.py).
DIVERGED_TAG = "df.diverged_from"
#: The Ray node a sweep trial ran on (last, if it was retried).
NODE_TAG = "df.node"
#: Set on a run whose trial a scheduler stopped before its last step (ASHA), at that step.
STOPPED_TAG = "df.stopped_early_at_step"
#: PBT (dreamfusion/tune/pbt.py): the mutated values a trial runs with now (JSON), how many perturbations it has
#: had, the last one.
PBT_VALUES_TAG = "df.pbt.values"
PBT_COUNT_TAG = "df.pbt.perturbations"
PBT_LAST_TAG = "df.pbt.last"
#: The sweep a parent run launched; and the launch's name (its start time).
SWEEP_TAG = "df.sweep"
LAUNCH_TAG = "df.launch"
#: On a parent run: how many trials the launch's spec expanded to (its `when:` conditions honoured), so that a report
#: counts what has no run against the launch's own count rather than expanding the spec again. A param since the
#: parent runs carry the sweep's params (`SPEC_PARAM`, …); launches before that hold it as a tag of the same name.
EXPECTED_TRIALS = "df.expected_trials"
#: What the loaded prior and scorer were, in words.
PRIOR_TAG = "df.prior"
SCORER_TAG = "df.scorer"
#: `df.component.<kind>` = "name@version" of each registered component a trial ran (evaluators comma-separated).
COMPONENT_TAG_PREFIX = "df.component."
#: `df.direction.<metric>` = "max" or "min" for each score the trial's evaluators log, as the evaluator declares it
#: (`Metric.mode`): a report ranks by the run's record, not by a table of its own. A reading that is better
#: neither way (`Metric.ranked` false) has none.
DIRECTION_TAG_PREFIX = "df.direction."
#: `df.levels.<metric>` = the names of an index metric's values 0, 1, … (`Metric.levels`), `LEVELS_SEPARATOR`-joined.
LEVELS_TAG_PREFIX = "df.levels."
LEVELS_SEPARATOR = ","
#: Provenance, on every run (taken on the driver of a sweep): the df-sweep source's git commit (absent for a
#: non-editable install), whether its tree had changes (their diff is the artifact `DIFF_ARTIFACT`), a hash of that
#: diff, df-sweep's version, `df.package.<name>` for each package in `PROVENANCE_PACKAGES`, and the command line.
GIT_COMMIT_TAG = "df.git.commit"
GIT_DIRTY_TAG = "df.git.dirty"
GIT_DIFF_HASH_TAG = "df.git.diff_sha256"
VERSION_TAG = "df.version"
PACKAGE_TAG_PREFIX = "df.package."
COMMAND_TAG = "df.command"
#: The host that launched a sweep (or ran `df-sweep run`); a trial's own host and device, where it ran.
DRIVER_HOST_TAG = "df.driver_host"
HOST_TAG = "df.host"
DEVICE_TAG = "df.device"
#: sha256 of the prior's weights as loaded (what ran, whatever the checkpoint was called).
PRIOR_HASH_TAG = "df.prior.sha256"
#: On a run continued under other code or packages (a resume after an edit): each change, `;`-separated, oldest first.
CODE_CHANGED_TAG = "df.code_changed"
#: The run a `df-sweep run --from-run` re-ran, and the run whose field an `init_from` trial started from.
FROM_RUN_TAG = "df.from_run"
INIT_RUN_TAG = "df.init_run"
#: Set by `df-sweep gc` on a run whose heavy artifacts it deleted: what, and when.
GC_TAG = "df.gc"
#: MLflow's own: the git commit its UI shows on a run's page.
MLFLOW_COMMIT_TAG = "mlflow.source.git.commit"
#: MLflow's own: a child run's parent, a run's name, and the note shown on a run's page.
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
#: MLflow 3's UI opens an experiment on its GenAI pages unless the experiment says it is model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

# -- params --------------------------------------------------------------------------------------------------------
#: A parent run's params, logged once as the launch creates it (MLflow refuses a param's change, and a resume keeps
#: them): the spec's name, Tune's search algorithm and scheduler, the metric it ranks by and its mode, and how many
#: trials the spec expands to (`EXPECTED_TRIALS`). A child run's params are its trial config (`tracking.params`).
SPEC_PARAM = "df.spec"
SEARCH_PARAM = "df.search"
SCHEDULER_PARAM = "df.scheduler"
METRIC_PARAM = "df.metric"
MODE_PARAM = "df.mode"

# -- metrics -------------------------------------------------------------------------------------------------------
#: A step's own time in ms: summed over a run's steps, the trial's compute (what a report counts, not wall time).
STEP_TIME = "step_ms"
#: What every optimisation step logs (plus `reg_<name>` for each active regulariser).
STEP_METRICS = ("loss", "loss_sds", "grad_norm", "t", "opacity", "nonfinite", STEP_TIME)
#: Metrics that measure time, not the optimisation: excluded when determinism is compared.
TIMING_METRICS = (STEP_TIME,)
#: The trial process's own resources (tracking.system), sampled in time; the MLflow UI's "System metrics" tab.
SYSTEM_PREFIX = "system/"
#: A mutated value of a PBT trial from the step it applies at.
PBT_METRIC_PREFIX = "pbt/"
#: A parent run's metrics, logged as its launch (or a resume of it) ends: how many of its trials' runs ended FINISHED
#: and FAILED, and `best_metric` and `median_metric` of the sweep's metric over the finished ones.
FINISHED_TRIALS = "df.trials_finished"
FAILED_TRIALS = "df.trials_failed"
#: Metrics that are neither a step's nor an evaluation's.
OTHER_METRIC_PREFIXES = ("reg_", SYSTEM_PREFIX, PBT_METRIC_PREFIX)

# -- artifacts -----------------------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"
SPEC_ARTIFACT = "spec.yaml"
FINAL_DIR = "final"
TURNTABLE_ARTIFACT = f"{FINAL_DIR}/turntable.gif"
#: The final field's weights (`df-sweep export` and `init_from` read them), mp4 turntable and mesh (`mesh.<format>`).
WEIGHTS_ARTIFACT = f"{FINAL_DIR}/field.pt"
VIDEO_ARTIFACT = f"{FINAL_DIR}/turntable.mp4"
MESH_ARTIFACT_STEM = f"{FINAL_DIR}/mesh"
#: What `df-sweep gc` deletes from the runs it does not keep: the large files under `final/`.
HEAVY_SUFFIXES = (".pt", ".mp4", ".glb", ".obj", ".ply")
#: The git diff of a dirty source tree; and of the tree a continued run went on under (`provenance/changed_N.diff`).
DIFF_ARTIFACT = "provenance/git.diff"
PROVENANCE_DIR = "provenance"
#: The key of the eval renders, logged once per eval through `log_image` with its step (the UI's image viewer steps
#: through them). MLflow stores each as `images/renders+step+<step>+timestamp+<ms>+<uuid>.png` (older versions: `%`
#: for `+`), beside a `+compressed.webp` thumbnail. Runs logged before 2026-12 also hold `renders/step_NNNNNN.png`.
RENDERS_IMAGE_KEY = "renders"
#: Packages whose versions every run records.
PROVENANCE_PACKAGES = ("torch", "diffusers", "transformers", "ray", "mlflow", "numpy")
#: One JSON file per PBT perturbation of a trial: `pbt/perturbation_NNN.json`.
PBT_DIR = "pbt"


def component_tag(kind: str) -> str:
    return f"{COMPONENT_TAG_PREFIX}{kind}"


def direction_tag(metric: str) -> str:
    return f"{DIRECTION_TAG_PREFIX}{metric}"


def levels_tag(metric: str) -> str:
    return f"{LEVELS_TAG_PREFIX}{metric}"


def best_metric(metric: str) -> str:
    """The parent run's best value of the sweep's `metric` over its finished trials (by the spec's mode)."""
    return f"df.best.{metric}"


def median_metric(metric: str) -> str:
    return f"df.median.{metric}"
