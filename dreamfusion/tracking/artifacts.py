"""A logged trial's files, from any MLflow store (a SQLite file's artifact folder or a server's, over HTTP): its
config and field weights for `df-sweep export`, `df-sweep run --from-run` and `init_from`; its heavy artifacts and
their deletion for `df-sweep gc`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.export.weights import find_weights, load_weights
from dreamfusion.nerf.grow import check_growable
from dreamfusion.tracking.schema import (
    CONFIG_ARTIFACT,
    FINAL_DIR,
    GC_TAG,
    HEAVY_SUFFIXES,
    WEIGHTS_ARTIFACT,
    looks_like_run_id,
)
from dreamfusion.tracking.store import client

if TYPE_CHECKING:
    from mlflow.entities import Run


def get_run(uri: str, run_id: str, key: str) -> Run:
    """The run, or a one-line ConfigError naming `key` (the option or config key the id came from)."""
    from mlflow.exceptions import MlflowException

    try:
        return client(uri).get_run(run_id)
    except MlflowException:
        raise ConfigError(f"{key}: no run {run_id} in {uri}") from None


def download(uri: str, run_id: str, artifact: str, dest: Path, key: str) -> Path:
    """One artifact of a run, copied under `dest`; a missing one (deleted by `df-sweep gc`, or never made) is a
    one-line ConfigError that says which."""
    run = get_run(uri, run_id, key)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        return Path(client(uri).download_artifacts(run_id, artifact, str(dest)))
    except Exception as exc:  # MLflow raises OSError, MlflowException or HTTP errors by store: all mean "not there"
        gone = run.data.tags.get(GC_TAG)
        why = f"deleted by df-sweep gc ({gone})" if gone else f"not logged ({first_line(exc)})"
        raise ConfigError(f"{key}: run {run_id} has no {artifact}: {why}") from None


def fetch_weights(uri: str, run_id: str, dest: Path, key: str) -> Path:
    """The run's final field weights, downloaded to `dest`."""
    return download(uri, run_id, WEIGHTS_ARTIFACT, dest, key)


def fetch_config(uri: str, run_id: str, dest: Path, key: str) -> Path:
    """The run's exact trial config (`config.yaml`), downloaded to `dest`."""
    return download(uri, run_id, CONFIG_ARTIFACT, dest, key)


def resolve_source(value: str, uri: str, dest: Path, key: str) -> Path:
    """A local path as given, or a run id's weights fetched to `dest`: where `init_from` and `df-sweep export` read
    a trained field from. Neither is a one-line ConfigError."""
    if Path(value).expanduser().exists():
        return Path(value).expanduser()
    if looks_like_run_id(value):
        return fetch_weights(uri, value, dest, key)
    raise ConfigError(f"{key}: {value!r} is neither an existing path nor an MLflow run id (32 hex digits)")


def fetch_init(cfg: TrialConfig, uri: str, dest: Path) -> Path | None:
    """The local weights file a trial's `init_from` names (a run's fetched to `dest`), checked to fit its field
    before the prior loads; None without `init_from`."""
    if cfg.init_from is None:
        return None
    weights = find_weights(resolve_source(cfg.init_from, uri, dest, "init_from"))
    check_growable(load_weights(weights).config.nerf, cfg.nerf)
    return weights


def check_source(value: str, uri: str, key: str) -> None:
    """Before anything starts: a local path exists, or a run id names a run of the store that kept its weights."""
    if Path(value).expanduser().exists():
        return
    if not looks_like_run_id(value):
        raise ConfigError(f"{key}: {value!r} is neither an existing path nor an MLflow run id (32 hex digits)")
    run = get_run(uri, value, key)
    if GC_TAG in run.data.tags and WEIGHTS_ARTIFACT not in heavy_artifacts(uri, value):
        raise ConfigError(f"{key}: run {value} has no {WEIGHTS_ARTIFACT}: deleted by df-sweep gc")


@dataclass(frozen=True)
class Artifact:
    path: str
    size: int


def heavy_artifacts(uri: str, run_id: str) -> dict[str, Artifact]:
    """The run's large final files (weights, videos, meshes) by path: what `df-sweep gc` may delete."""
    found = {}
    for item in client(uri).list_artifacts(run_id, FINAL_DIR):
        if not item.is_dir and item.path.endswith(HEAVY_SUFFIXES):
            found[item.path] = Artifact(item.path, int(item.file_size or 0))
    return found


def delete_artifacts(uri: str, run_id: str, paths: list[str]) -> None:
    """Delete files from a run's artifact store (local folders, object stores, and an MLflow server that serves
    artifacts, through its artifact repository)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    repository = get_artifact_repository(client(uri).get_run(run_id).info.artifact_uri, tracking_uri=uri)
    for path in paths:
        repository.delete_artifacts(path)
