"""The MLflow store: which URI, whether it answers before anything starts, one client per process, experiments
and the UI links into them."""

from __future__ import annotations

import functools
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from dreamfusion.errors import ConfigError
from dreamfusion.tracking.schema import EXPERIMENT_KIND_TAG

if TYPE_CHECKING:
    from mlflow import MlflowClient

DEFAULT_URI = "sqlite:///mlruns.db"
#: Artifacts of a SQLite store go beside the database file, in this folder, one subfolder per experiment.
ARTIFACTS_DIR = "mlartifacts"
#: The experiment `df-sweep run` logs its single runs to.
RUN_EXPERIMENT = "df-sweep-run"
REACH_TIMEOUT_S = 3.0


def resolve_uri(uri: str | None) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else `sqlite:///mlruns.db`; a relative SQLite path is made
    absolute here, because Ray workers run in other directories."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def check_reachable(uri: str) -> None:
    """Fail before anything starts: a SQLite directory must be writable, a server must answer."""
    db = sqlite_path(uri)
    scheme = urlparse(uri).scheme
    if db is not None:
        _check_writable(db.parent, uri)
        if db.exists() and not os.access(db, os.W_OK):
            raise ConfigError(f"tracking.uri: {db} is not writable ({uri})")
    elif scheme == "sqlite":
        raise ConfigError(f"tracking.uri: expected sqlite:///PATH to a database file, got {uri}")
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme in ("", "file"):
        _check_writable(Path(uri.removeprefix("file://")).absolute().parent, uri)


def _check_writable(folder: Path, uri: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"tracking.uri: directory {folder} does not exist ({uri})")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"tracking.uri: directory {folder} is not writable ({uri})")


def _check_server(uri: str) -> None:
    base = uri.rstrip("/")
    reason = ""
    for probe in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            with urllib.request.urlopen(base + probe, timeout=REACH_TIMEOUT_S) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            reason = str(getattr(exc, "reason", exc))
            break  # nothing listens: a second probe would only wait again
    raise ConfigError(
        f"tracking.uri: cannot reach an MLflow server at {uri} ({reason}); start one "
        f"(df-sweep ui) or pass another --tracking-uri"
    )


@functools.lru_cache(maxsize=4)
def client(uri: str) -> MlflowClient:
    """One client per store and process: opening a SQLite store checks its schema, which takes a second."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def open_store(uri: str) -> None:
    """Make the store ready: on a fresh SQLite file, create its schema (MLflow's migrations take seconds)."""
    client(uri).search_experiments(max_results=1)


def open_experiment(uri: str, name: str) -> str:
    """The experiment's id, creating it (model-training kind, artifacts beside a SQLite store) if needed."""
    mlflow = client(uri)
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise ConfigError(
                f"tracking: experiment {name!r} is deleted in {uri}; restore it in the MLflow UI "
                f"or set tracking.experiment"
            )
        return str(found.experiment_id)
    db = sqlite_path(uri)
    location = str(db.parent / ARTIFACTS_DIR / name) if db is not None else None
    return str(
        mlflow.create_experiment(
            name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: "custom_model_development"}
        )
    )


def runs_link(ui: str, experiment_id: str) -> str:
    """The runs table with params and metrics columns (not the GenAI overview MLflow 3 opens by default)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiment_links(uri: str, ui: str) -> list[tuple[str, str]]:
    """(name, runs-table link) of every experiment in the store but MLflow's empty Default."""
    experiments = client(uri).search_experiments()
    return [(e.name, runs_link(ui, e.experiment_id)) for e in experiments if e.name != "Default"]
