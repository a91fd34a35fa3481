"""Shared by the sweep tests: a module-scoped local Ray whose workers load a small analytic prior, tiny specs.

The analytic prior renders 42 prompts x 32 views at 32 px the first time it loads (over a minute on one core,
then cached on disk); the worker setup hook below shrinks that bank to 2 views at 16 px, cached in the test's own
folder, so a worker is ready in seconds on a fresh machine too. Everything else is the real code path: the real
prior class, real Ray Tune, real MLflow on SQLite.
"""

from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

TESTS = Path(__file__).parent

#: The smallest trial that still exercises everything: evals, checkpoints, renders, the turntable.
TINY_BASE: dict[str, Any] = {
    "steps": 12,
    "checkpoint_every": 4,
    "nerf": {"size": "tiny"},
    "render": {"resolution": 16, "samples_per_ray": 16, "views_per_step": 1},
    "eval": {"every": 4, "views": 2, "turntable_frames": 2},
}


def small_world() -> None:
    """Ray worker setup hook: the analytic prior's image bank at 16 px with 2 views per prompt."""
    from dreamfusion.priors import analytic

    analytic.world_bank = functools.partial(analytic.world_bank, resolution=16, views=2)


def small_world_failing_once() -> None:
    """Worker setup hook: the small prior, and a trial with seed 1 that raises the first time it is at step
    FAIL_AT_STEP (after its checkpoint at step 4), once per trial of each launch."""
    small_world()
    from ray import tune

    from dreamfusion.trial import Trial

    train_step = Trial.train_step

    def failing_once(self: Trial) -> dict[str, float]:
        if self.cfg.seed == 1 and self.step == FAIL_AT_STEP:
            context = tune.get_context()
            marker = Path(os.environ["DF_TEST_MARKERS"]) / f"{context.get_experiment_name()}-{context.get_trial_id()}"
            if not marker.exists():
                marker.touch()
                raise RuntimeError("injected failure")
        return train_step(self)

    Trial.train_step = failing_once


FAIL_AT_STEP = 6


@contextmanager
def local_ray(root: Path, hook: str = "sweep_helpers.small_world", env: dict[str, str] | None = None) -> Iterator[None]:
    """One embedded Ray for a test module, started the way `df-sweep launch` starts it; `hook` (a dotted name in
    this folder) runs in every worker before its first trial."""
    import ray

    from dreamfusion.sweep.launch import start_local_ray

    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    env = {"PYTHONPATH": path, "DF_SWEEP_CACHE": str(root / "cache"), **(env or {})}
    start_local_ray(root, runtime_env={"worker_process_setup_hook": hook, "env_vars": env})
    try:
        yield
    finally:
        ray.shutdown()


def write_spec(path: Path, name: str, space: dict[str, Any], **extra: Any) -> Path:
    spec = {"name": name, "base": TINY_BASE, "space": space, "resources": {"cpu": 1}, **extra}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def sweep_runs(uri: str, name: str) -> tuple[Any, list[Any]]:
    """(parent runs, child runs) of the experiment `name` in the store at `uri`."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children
