"""Where a run came from: the df-sweep source (git commit, dirty flag and diff, or the installed version), the
versions of the packages that shape a result, the command line and the host. Taken once on the driver, because a
sweep's workers run a copy of the code shipped without `.git`, and passed to every trial with its tracker.

A run that goes on under other code (`df-sweep resume` after an edit, a retry on an upgraded node) keeps a record:
`df.code_changed` lists each change, the run's provenance tags then describe the code that ran last, and the new
diff is logged beside the first."""

from __future__ import annotations

import functools
import hashlib
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from dreamfusion.tracking.runs import MAX_TAG_VALUE
from dreamfusion.tracking.schema import (
    CODE_CHANGED_TAG,
    COMMAND_TAG,
    DIFF_ARTIFACT,
    DRIVER_HOST_TAG,
    GIT_COMMIT_TAG,
    GIT_DIFF_HASH_TAG,
    GIT_DIRTY_TAG,
    MLFLOW_COMMIT_TAG,
    PACKAGE_TAG_PREFIX,
    PROVENANCE_DIR,
    PROVENANCE_PACKAGES,
    VERSION_TAG,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

DISTRIBUTION = "df-sweep"
GIT_TIMEOUT_S = 10
#: The tags that say which code ran: a difference in any of them between two runs is a change of code.
CODE_TAGS = (
    GIT_COMMIT_TAG,
    GIT_DIRTY_TAG,
    GIT_DIFF_HASH_TAG,
    VERSION_TAG,
    *(PACKAGE_TAG_PREFIX + p for p in PROVENANCE_PACKAGES),
)


@dataclass(frozen=True)
class Provenance:
    """Tags for a run, and the diff of a dirty source tree (empty when clean or not a git checkout)."""

    tags: dict[str, str] = field(default_factory=dict)
    diff: str = ""

    @property
    def code(self) -> dict[str, str]:
        return {k: self.tags.get(k, "") for k in CODE_TAGS}

    def record(self, mlflow: MlflowClient, run_id: str) -> None:
        """Tag a new run with where it came from (one write); log the diff if the tree was dirty."""
        from mlflow.entities import RunTag

        mlflow.log_batch(run_id, tags=[RunTag(k, v[:MAX_TAG_VALUE]) for k, v in self.tags.items()])
        if self.diff:
            mlflow.log_text(run_id, self.diff, DIFF_ARTIFACT)

    def record_change(self, mlflow: MlflowClient, run_id: str, recorded: dict[str, str], when: str) -> list[str]:
        """On a run that goes on (`recorded` its tags): if the code differs, say so in `df.code_changed`, log the
        new diff, and retag the run with the code that runs now. Returns the differences, in words."""
        changes = differences(recorded, self.code)
        if not changes:
            return []
        history = [h for h in recorded.get(CODE_CHANGED_TAG, "").split("; ") if h]
        history.append(f"{when}: {', '.join(changes)}")
        mlflow.set_tag(run_id, CODE_CHANGED_TAG, "; ".join(history)[-MAX_TAG_VALUE:])
        if self.diff:
            mlflow.log_text(run_id, self.diff, f"{PROVENANCE_DIR}/changed_{len(history)}.diff")
        for key, value in self.code.items():
            if value:
                mlflow.set_tag(run_id, key, value)
            elif key in recorded:
                mlflow.delete_tag(run_id, key)
        return changes


def differences(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """'df.git.commit 1a2b3c4 → 5d6e7f8', one per code tag whose value changed (a run that recorded no code tags,
    from before provenance existed, has none to compare)."""
    if not any(k in recorded for k in CODE_TAGS):
        return []
    short = lambda v: (v[:12] if len(v) == 40 or len(v) == 64 else v) or "none"
    return [
        f"{key.removeprefix('df.')} {short(recorded.get(key, ''))} → {short(now.get(key, ''))}"
        for key in CODE_TAGS
        if recorded.get(key, "") != now.get(key, "")
    ]


def collect(command: list[str] | None = None) -> Provenance:
    """The provenance of this process: MLflow's own context tags (user, source), the df-sweep source's commit and
    diff, the package versions, the command line and this host."""
    from mlflow.tracking.context.registry import resolve_tags

    tags = {k: str(v) for k, v in resolve_tags().items() if k != MLFLOW_COMMIT_TAG}  # that one names the entry script
    tags[VERSION_TAG] = _version(DISTRIBUTION)
    tags.update({PACKAGE_TAG_PREFIX + p: _version(p) for p in PROVENANCE_PACKAGES})
    tags[COMMAND_TAG] = shlex.join(command if command is not None else sys.argv)
    tags[DRIVER_HOST_TAG] = socket.gethostname()
    source = source_checkout()
    diff = ""
    if source is not None:
        commit, diff = _git(source, "rev-parse", "HEAD").strip(), _tree_diff(source)
        tags[GIT_COMMIT_TAG] = tags[MLFLOW_COMMIT_TAG] = commit
        tags[GIT_DIRTY_TAG] = str(bool(diff)).lower()
        if diff:
            tags[GIT_DIFF_HASH_TAG] = hashlib.sha256(diff.encode()).hexdigest()
    return Provenance(tags, diff)


@functools.lru_cache(maxsize=1)
def source_checkout() -> Path | None:
    """The git work tree the imported `dreamfusion` package is a tracked part of (an editable install or a clone on
    the path), else None (an installed wheel, a shipped copy on a worker). Found from the package's location, not
    the working directory: a user launching from their experiments folder is not in the source."""
    import dreamfusion

    package = Path(dreamfusion.__file__).resolve().parent
    try:
        root = Path(_git(package, "rev-parse", "--show-toplevel").strip())
        _git(root, "ls-files", "--error-unmatch", str(package / "__init__.py"))
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None
    return root


def _tree_diff(root: Path) -> str:
    """Changes to tracked files against HEAD, then the names of untracked files (not ignored) under the source."""
    diff = _git(root, "diff", "HEAD", "--no-color", "--no-ext-diff")
    untracked = _git(root, "ls-files", "--others", "--exclude-standard").split()
    if untracked:
        diff += "".join(f"# untracked: {name}\n" for name in untracked)
    return diff


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True, timeout=GIT_TIMEOUT_S
    )
    return result.stdout


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"
