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
#: The sweep a parent run launched; and the launch's name (its start time).
SWEEP_TAG = "df.sweep"
LAUNCH_TAG = "df.launch"
#: What the loaded prior and scorer were, in words.
PRIOR_TAG = "df.prior"
SCORER_TAG = "df.scorer"
#: `df.component.<kind>` = "name@version" of each registered component a trial ran (evaluators comma-separated).
COMPONENT_TAG_PREFIX = "df.component."
#: MLflow's own: a child run's parent, a run's name, and the note shown on a run's page.
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
#: MLflow 3's UI opens an experiment on its GenAI pages unless the experiment says it is model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"

# -- metrics -------------------------------------------------------------------------------------------------------
#: A step's own time in ms: summed over a run's steps, the trial's compute (what a report counts, not wall time).
STEP_TIME = "step_ms"
#: What every optimisation step logs (plus `reg_<name>` for each active regulariser).
STEP_METRICS = ("loss", "loss_sds", "grad_norm", "t", "opacity", STEP_TIME)
#: Metrics that measure time, not the optimisation: excluded when determinism is compared.
TIMING_METRICS = (STEP_TIME,)

# -- artifacts -----------------------------------------------------------------------------------------------------
CONFIG_ARTIFACT = "config.yaml"
SPEC_ARTIFACT = "spec.yaml"
RENDERS_DIR = "renders"
FINAL_DIR = "final"
TURNTABLE_ARTIFACT = f"{FINAL_DIR}/turntable.gif"


def component_tag(kind: str) -> str:
    return f"{COMPONENT_TAG_PREFIX}{kind}"
