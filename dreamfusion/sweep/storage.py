"""Where sweeps live on disk (or in object storage): one directory per sweep, one per launch, Tune's state inside
it, and the launch record that lets `resume` and `status` find everything from the sweep's name alone.

Paths may be URIs (s3://, gs://, file://): they are opened with pyarrow, the way Tune opens its `storage_path`.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dreamfusion.errors import ConfigError
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
        fs, path = filesystem(self.experiment_dir)
        fs.create_dir(path)
        with fs.open_output_stream(posixpath.join(path, LAUNCH_FILE)) as out:
            out.write(json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def load(cls, experiment_dir: str) -> Launch:
        fs, path = filesystem(experiment_dir)
        with fs.open_input_stream(posixpath.join(path, LAUNCH_FILE)) as stored:
            data = json.loads(stored.read())
        tracker = data["tracker"]  # a launch from before provenance was recorded has none
        origin = Provenance(**tracker.get("provenance", {}))
        return cls(data["spec"], data["experiment_dir"], TrialTracker(**{**tracker, "provenance": origin}))


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


def sweep_names(root: str) -> list[str]:
    return [name for name in _subdirs(root) if _launches(join(root, name))]
