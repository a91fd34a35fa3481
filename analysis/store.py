"""Reading an MLflow store for a report: an experiment's runs into pandas through MLflow's own `search_runs`, and
artifact downloads without a progress bar each."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pandas as pd


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """`mlflow.search_runs` reads the global tracking URI: point it at `uri`, then back (MLflow keeps the global
    and $MLFLOW_TRACKING_URI equal, so the variable is what to restore; None unsets both)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)  # type: ignore[arg-type]  # None is MLflow's "unset"


def search_runs(uri: str, experiment_id: str) -> pd.DataFrame:
    """Every run of the experiment, one row each: MLflow's own `search_runs` into pandas."""
    import mlflow

    with _global_tracking_uri(uri):
        found = mlflow.search_runs([experiment_id], output_format="pandas", max_results=100_000)
    return found if isinstance(found, pd.DataFrame) else pd.DataFrame()


@contextmanager
def quiet_artifacts() -> Iterator[None]:
    """No tqdm bar per downloaded artifact: a report fetches one file per trial and says so once itself."""
    before = os.environ.get("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR")
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", None)
        else:
            os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = before
