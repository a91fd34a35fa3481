"""Where sweeps live on disk (or in object storage): one directory per sweep, one per launch, Tune's state inside
it, and the launch record that lets `resume` and `status` find everything from the sweep's name alone.

Paths may be URIs (s3://, gs://, file://): they are opened with pyarrow, the way Tune opens its `storage_path`.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dreamfusion.errors import ConfigError, first_line
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.provenance import Provenance

#: What a launch stores beside Tune's experiment state, so that `resume` and `status` need only the name.
LAUNCH_FILE = "df_sweep.json"
DEFAULT_STORAGE = "ray_results"


@dataclass(frozen=True)
class Launch:
    """One launch of a sweep: where Tune keeps it, and where MLflow tracks it."""

    spec: dict[str, Any]
    experiment_dir: str
    tracker: TrialTracker

    @property
    def parent_run_id(self) -> str:
        """A launch always has its parent run (single `df-sweep run`s have none, and no launch)."""
        assert self.tracker.parent_run_id is not None
        return self.tracker.parent_run_id

    @property
    def sweep(self) -> SweepSpec:
        return SweepSpec.model_validate(self.spec)

    def save(self) -> None:
        """Written whole or not at all (a temporary name, then a rename): a record cut short by a kill would make the
        launch unreadable to `resume` and `status`, while a missing one only hides a launch that never started."""
        fs, path = filesystem(self.experiment_dir)
        fs.create_dir(path)
        partial = posixpath.join(path, f".{LAUNCH_FILE}.partial")
        with fs.open_output_stream(partial) as out:
            out.write(json.dumps(asdict(self), indent=2).encode())
        fs.move(partial, posixpath.join(path, LAUNCH_FILE))

    @classmethod
    def load(cls, experiment_dir: str) -> Launch:
        fs, path = filesystem(experiment_dir)
        with fs.open_input_stream(posixpath.join(path, LAUNCH_FILE)) as stored:
            data = json.loads(stored.read())
        tracker = data["tracker"]  # a launch from before provenance was recorded has none
        origin = Provenance(**tracker.get("provenance", {}))
        return cls(data["spec"], data["experiment_dir"], TrialTracker(**{**tracker, "provenance": origin}))

    def resumable(self) -> bool:
        """Whether Tune saved enough of this launch to restore it: its Tuner and a state that lists trials. A launch
        stopped in its first seconds has neither, or its Tuner alone (all that `Tuner.can_restore` looks for), and
        Tune, asked to restore it, starts an empty experiment."""
        try:
            return bool(saved_trials(self.experiment_dir))
        except Exception:  # unreachable storage, a state cut short by a kill as Tune wrote it, or one Ray cannot read
            return False


def saved_trials(experiment_dir: str) -> list[Any]:
    """The trials of the newest state Tune saved of a launch, read by Tune's public API: none without a Tuner to
    restore them with. Raises where there is no state yet (ValueError), where the newest is cut short (ValueError),
    and where the storage cannot be reached (OSError)."""
    from ray import tune

    fs, path = filesystem(experiment_dir)
    if not tune.Tuner.can_restore(path, storage_filesystem=fs):
        return []
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.ERROR)  # a trial that has not reported yet is news to no one: no warning for it
    try:
        return tune.ExperimentAnalysis(path, storage_filesystem=fs).trials
    finally:
        tune_logger.setLevel(level)


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


def check_storage(root: str, write: bool = True) -> None:
    """Fail before Ray starts, creating nothing: Tune's storage root must be a directory this process can write
    in, or one it can create (its nearest existing parent then takes a probe file, removed at once). A URI must be
    a filesystem pyarrow knows, and reachable. Commands that only read (`status`) pass `write=False`: a root that
    does not exist yet is then fine, and nothing is probed."""
    if is_uri(root):
        import pyarrow
        import pyarrow.fs

        try:
            fs, path = filesystem(root)
            kind = fs.get_file_info(path).type
        except (OSError, pyarrow.ArrowException) as exc:
            raise ConfigError(f"--storage {root}: cannot reach it ({_reason(exc)})") from None
        if kind == pyarrow.fs.FileType.File:
            raise ConfigError(f"--storage {root}: is a file; expected a directory for the sweeps' results")
        return
    existing = Path(root)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"--storage {root}: {existing} is a file; expected a directory for the sweeps' results")
    if not write:
        return
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise ConfigError(f"--storage {root}: cannot write in {existing} ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)


def exists(location: str) -> bool:
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
    return [join(sweep_dir, d) for d in _subdirs(sweep_dir) if exists(join(sweep_dir, d, LAUNCH_FILE))]


def find_launch(name: str, storage: str | Path | None) -> str:
    """The newest launch of sweep `name` under the storage root (or `name` itself, if it is a launch dir)."""
    if exists(join(name, LAUNCH_FILE)):
        return name if is_uri(name) else str(Path(name).absolute())
    root = storage_root(storage)
    launches = _launches(join(root, name))
    if not launches:
        known = ", ".join(sweep_names(root)) or "none"
        raise ConfigError(f"{name}: no sweep of that name under {root} (sweeps there: {known})")
    return launches[-1]


def new_launch(sweep_dir: str) -> str:
    """A fresh directory per launch, named by its start time and claimed atomically where the disk is local: two
    launches of one sweep in the same second get one directory each."""
    return claim_new_dir(sweep_dir, time.strftime("%Y-%m-%d_%H-%M-%S"))


def claim_new_dir(parent: str, stem: str) -> str:
    """The name of a directory created under `parent` for the caller alone: `stem`, else `stem_2`, `stem_3`..."""
    name, n = stem, 1
    while not _claim(join(parent, name)):
        n += 1
        name = f"{stem}_{n}"
    return name


def _claim(location: str) -> bool:
    """Create the directory unless it exists: `mkdir` decides between racing launches on a local disk; object
    storage has no such test, and there a check has to do."""
    if is_uri(location):
        return not exists(location)
    path = Path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        return False
    return True


def load_launch(name: str, storage: str | Path | None) -> Launch:
    """The newest launch of `name` (see `find_launch`), its record read back; a record that cannot be read (cut
    short, or written by another version) is a one-line error, not a traceback."""
    experiment_dir = find_launch(name, storage)
    try:
        return Launch.load(experiment_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{name}: cannot read {join(experiment_dir, LAUNCH_FILE)} ({first_line(exc)})") from None


def sweep_names(root: str) -> list[str]:
    return [name for name in _subdirs(root) if _launches(join(root, name))]
