"""The MLflow store: which URI, whether it answers before anything starts, one client per process, experiments
and the UI links into them."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
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
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Where MLflow logs a database error, SQL and traceback, before it raises it: df-sweep reports the raise, in one line.
MLFLOW_DB_LOGGER = "mlflow.store.db.utils"
SQLITE_HEADER_BYTES = 100


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
        if db.exists():
            _check_sqlite(db)
    elif scheme == "sqlite":
        raise ConfigError(f"tracking.uri: expected sqlite:///PATH to a database file, got {uri}")
    elif scheme in ("http", "https"):
        _check_server(uri)
    elif scheme in ("", "file"):
        _check_writable(Path(uri.removeprefix("file://")).absolute().parent, uri)


def check_store(uri: str) -> None:
    """Before a command reads a store that must exist already (`report`, `gc`, `export RUN_ID`, `ui`), in one line
    and within seconds: a server must answer (the same bounded probe as `run` and `launch`), a SQLite file must be
    there (reading creates no empty mlruns.db) and be a whole database, and a file store is refused, since MLflow
    keeps it in maintenance mode and raises on opening it unless MLFLOW_ALLOW_FILE_STORE=true."""
    db = sqlite_path(uri)
    scheme = urlparse(uri).scheme
    if db is not None:
        if not db.exists():
            raise ConfigError(
                f"tracking.uri: no MLflow store at {db} ({uri}); run from the directory you launched in, or pass "
                f"--tracking-uri"
            )
        _check_sqlite(db)
    elif scheme in ("", "file") and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise ConfigError(
            f"tracking.uri: {uri} is a file store, which MLflow keeps in maintenance mode and refuses to open; "
            f"pass a sqlite:///PATH store or a server (mlflow migrate-filestore converts one)"
        )
    else:
        check_reachable(uri)


def _check_writable(folder: Path, uri: str) -> None:
    if not folder.is_dir():
        raise ConfigError(f"tracking.uri: directory {folder} does not exist ({uri})")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"tracking.uri: directory {folder} is not writable ({uri})")


def _check_sqlite(db: Path) -> None:
    """An existing store must be a whole SQLite database: a truncated or overwritten mlruns.db would otherwise
    fail deep inside MLflow, after Ray has started. Cheap whatever the store's size: the header, the file's length
    against the pages the header counts, and the schema."""
    problem = _sqlite_problem(db)
    if problem:
        raise ConfigError(
            f"tracking.uri: {db} is not a usable SQLite database ({problem}); move it aside, or pass another "
            f"--tracking-uri"
        )


def _sqlite_problem(db: Path) -> str | None:
    if not db.is_file():
        return "not a file"
    with db.open("rb") as f:
        header = f.read(SQLITE_HEADER_BYTES)
    if len(header) == 0:
        return None  # an empty file: SQLite makes it a fresh database
    if len(header) < SQLITE_HEADER_BYTES or not header.startswith(SQLITE_MAGIC):
        return "not a SQLite file"
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size  # the format's way of writing 65536 in two bytes
    # the page count is valid when its "version-valid-for" number matches the change counter
    pages = int.from_bytes(header[28:32], "big") if header[92:96] == header[24:28] else 0
    if db.stat().st_size < pages * page_size:
        return f"truncated: {db.stat().st_size:,} bytes of the {pages * page_size:,} its header counts"
    try:
        # read-write, as MLflow opens it: SQLite then rolls back a transaction a crash or a full disk left behind
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        return str(exc)
    return None


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
