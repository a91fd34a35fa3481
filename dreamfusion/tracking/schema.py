"""The names runs are written and read by: MLflow tags, step metrics and artifact paths. Tracking writes them,
`analysis/` reads them, and nothing else spells them out. The trial's eval metrics are declared by the registered
evaluators that produce them (`dreamfusion.evaluators`); their `name@version` land in the `df.component.*` tags."""

from __future__ import annotations

# -- tags ----------------------------------------------------------------------------------------------------------
#: A trial run's key within its experiment: Tune's trial id for a sweep, a hash of --out for `df-sweep run`.
TRIAL_KEY_TAG = "df.trial_id"
#: Why a run ended FAILED, in one line.
FAILURE_TAG = "df.failure"
#: Where a trial went non-finite from: "<Ray job id>/<checkpoint it started from>" (see sweep.worker).
DIVERGED_TAG = "df.diverged_from"
#: The Ray node a sweep trial ran on (last, if it was retried).
NODE_TAG = "df.node"
#: Set on a run whose trial a scheduler stopped before its last step (ASHA), at that step.
STOPPED_TAG = "df.stopped_early_at_step"
#: PBT (sweep.pbt): the mutated values a trial runs with now (JSON), how many perturbations it has had, the last one.
PBT_VALUES_TAG = "df.pbt.values"
PBT_COUNT_TAG = "df.pbt.perturbations"
PBT_LAST_TAG = "df.pbt.last"
#: The sweep a parent run launched; and the launch's name (its start time).
SWEEP_TAG = "df.sweep"
LAUNCH_TAG = "df.launch"
#: What the loaded prior and scorer were, in words.
PRIOR_TAG = "df.prior"
SCORER_TAG = "df.scorer"
#: `df.component.<kind>` = "name@version" of each registered component a trial ran (evaluators comma-separated).
COMPONENT_TAG_PREFIX = "df.component."
#: MLflow's own: a child run's parent, and the note shown on a run's page.
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
#: MLflow 3's UI opens an experiment on its GenAI pages unless the experiment says it is model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

# -- metrics -------------------------------------------------------------------------------------------------------
#: What every optimisation step logs (plus `reg_<name>` for each active regulariser).
STEP_METRICS = ("loss", "loss_sds", "grad_norm", "t", "opacity", "step_ms")
#: Metrics that measure time, not the optimisation: excluded when determinism is compared.
TIMING_METRICS = ("step_ms",)
#: The trial process's own resources (tracking.system), sampled in time; the MLflow UI's "System metrics" tab.
SYSTEM_PREFIX = "system/"
#: A mutated value of a PBT trial from the step it applies at.
PBT_METRIC_PREFIX = "pbt/"
#: Metrics that are neither a step's nor an evaluation's.
OTHER_METRIC_PREFIXES = ("reg_", SYSTEM_PREFIX, PBT_METRIC_PREFIX)

# -- artifacts -----------------------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"
SPEC_ARTIFACT = "spec.yaml"
RENDERS_DIR = "renders"
FINAL_DIR = "final"
TURNTABLE_ARTIFACT = f"{FINAL_DIR}/turntable.gif"
#: One JSON file per PBT perturbation of a trial: `pbt/perturbation_NNN.json`.
PBT_DIR = "pbt"


def component_tag(kind: str) -> str:
    return f"{COMPONENT_TAG_PREFIX}{kind}"
