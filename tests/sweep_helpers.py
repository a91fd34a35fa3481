"""Shared by the sweep tests: a module-scoped local Ray whose workers load a small analytic prior, tiny specs.

The analytic prior renders 42 prompts x 32 views at 32 px the first time it loads (over a minute on one core,
then cached on disk); the worker setup hook below shrinks that bank to 2 views at 16 px, cached in the test's own
folder, so a worker is ready in seconds on a fresh machine too. Everything else is the real code path: the real
prior class, real Ray Tune, real MLflow on SQLite.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from dreamfusion import registry
from dreamfusion.config.schema import TrialConfig
from dreamfusion.toyworld import world
from dreamfusion.toyworld.analytic import AnalyticPrior

TESTS = Path(__file__).parent

#: The smallest trial that still exercises everything: evals, checkpoints, renders, the turntable. On the analytic
#: prior, not the default toyworld one: its bank shrinks to 16 px (below), so a trial's steps cost almost nothing.
TINY_BASE: dict[str, Any] = {
    "prior": "analytic",
    "steps": 12,
    "checkpoint_every": 4,
    "nerf": {"size": "tiny"},
    "render": {"resolution": 16, "samples_per_ray": 16, "views_per_step": 1},
    "eval": {"every": 4, "views": 2, "turntable_frames": 2},
}


#: The analysis tests' two sweeps (tests/integration/analysis/conftest.py launches them).
ANALYSED, ANALYSED_SHORT = "analysed", "analysed-short"
ANALYSED_SPACE = {
    "prompt": {"grid": ["a red cube", "a blue cone"]},
    "sds.guidance_scale": {"grid": [5.0, 30.0]},
    "seed": {"grid": [0, 1]},
}


def set_args(**dotted: object) -> list[str]:
    """`--set k=v` arguments of a CLI call, from keyword arguments whose `__` stands for a dot."""
    return [arg for key, value in dotted.items() for arg in ("--set", f"{key.replace('__', '.')}={value}")]


#: The TINY_BASE trial as `df-sweep run` overrides (what a CLI test runs on the default toyworld prior).
TINY_RUN = set_args(
    nerf__size="tiny",
    render__resolution=16,
    render__samples_per_ray=16,
    render__views_per_step=1,
    eval__views=2,
    eval__turntable_frames=2,
)


def small_world() -> None:
    """Ray worker setup hook: the analytic prior's image bank at 16 px with 2 views per prompt."""
    from dreamfusion.toyworld import analytic

    analytic.world_bank = functools.partial(analytic.world_bank, resolution=16, views=2)


def small_analytic_prior() -> AnalyticPrior:
    """The analytic prior with `small_world`'s bank, loaded in this process (the patch is undone once loaded)."""
    from dreamfusion.toyworld import analytic

    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analytic, "world_bank", functools.partial(analytic.world_bank, resolution=16, views=2))
        return analytic.load_analytic_prior("cpu")


def small_world_failing_once() -> None:
    """Worker setup hook: the small prior, and a trial with seed 1 that raises the first time it is at step
    FAIL_AT_STEP (after its checkpoint at step 4), once per trial of each launch; through the trial's step hook."""
    small_world()
    from dreamfusion.trial.hooks import add_step_hook

    def failing_once(cfg: TrialConfig, step: int) -> None:
        if cfg.seed == 1 and step == FAIL_AT_STEP and (marker := first_time("failed")) is not None:
            marker.touch()
            raise RuntimeError("injected failure")

    add_step_hook(failing_once)


FAIL_AT_STEP = 6


def first_time(what: str) -> Path | None:
    """The marker file of `what` for this trial of this launch (in $DF_TEST_MARKERS), or None once it exists:
    a fault injected only the first time lets the trial's retry get past it."""
    from ray import tune

    context = tune.get_context()
    marker = Path(os.environ["DF_TEST_MARKERS"]) / f"{context.get_experiment_name()}-{context.get_trial_id()}.{what}"
    return None if marker.exists() else marker


@registry.register
class NanPromptPrior(AnalyticPrior):
    """The analytic prior, conditioning on NaN for the prompt in $DF_TEST_NAN_PROMPT, so its ε̂ goes non-finite
    for that prompt only: a prior gone bad, added through the registry as any plugin prior is (a spec selects it
    with `prior: test-nan-prompt` and `plugins: [sweep_helpers]`); the real analytic prior does the rest."""

    name = "test-nan-prompt"

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        weights = super().encode_text(prompts)  # [B, K] log-weights over the image bank
        bad = torch.tensor([world.strip_view(p) == os.environ.get("DF_TEST_NAN_PROMPT") for p in prompts])
        return torch.where(bad[:, None], float("nan"), weights)


def small_world_refusing_seed_1() -> None:
    """Worker setup hook: the small prior, and the trial schema refusing the config of a trial with seed 1, as the
    worker builds it: the schema's own error (seed -1), as when the spec's check did not meet a value (a draw it did
    not make, or the code changed before a resume). Each refusal appends a line to $DF_TEST_MARKERS/refused."""
    small_world()
    from dreamfusion.sweep.spec import SweepSpec

    build = SweepSpec.trial_config

    def refusing(self: SweepSpec, values: dict[str, Any], source: str = "sweep") -> TrialConfig:
        if values.get("seed") != 1:
            return build(self, values, source)
        with open(Path(os.environ["DF_TEST_MARKERS"]) / "refused", "a") as refused:
            refused.write(f"{os.getpid()}\n")
        return build(self, {**values, "seed": -1}, source)

    SweepSpec.trial_config = refusing  # type: ignore[method-assign]


def faulty_world() -> None:
    """Worker setup hook: the small prior, with the faults the job's env asks for (a spec that wants NaN selects
    `NanPromptPrior`). DF_TEST_HOLD_SEEDS (comma-separated): a trial with one of those seeds, the first time it
    reaches step FAIL_AT_STEP (after its checkpoint at step 4), writes {"pid", "node"} to its `.held` marker and
    waits there (so a test can kill its worker or its node) until $DF_TEST_MARKERS/release exists. Each worker
    also records which copy of `dreamfusion` it imported, in `code-<pid>`."""
    small_world()
    import dreamfusion
    from dreamfusion.trial.hooks import add_step_hook

    (Path(os.environ["DF_TEST_MARKERS"]) / f"code-{os.getpid()}").write_text(dreamfusion.__file__)
    hold_seeds = {int(s) for s in os.environ.get("DF_TEST_HOLD_SEEDS", "").split(",") if s}

    def held_once(cfg: TrialConfig, step: int) -> None:
        if cfg.seed in hold_seeds and step == FAIL_AT_STEP and (marker := first_time("held")) is not None:
            _hold(marker)

    add_step_hook(held_once)


def _hold(marker: Path, timeout_s: float = 120) -> None:
    import ray

    written = marker.with_suffix(".tmp")  # then renamed: a test polling for the marker never reads half of it
    written.write_text(json.dumps({"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id()}))
    written.replace(marker)
    deadline = time.monotonic() + timeout_s
    while not (marker.parent / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.2)


def tests_on_path() -> str:
    """PYTHONPATH with this folder first, so that workers and drivers import the hooks above."""
    return os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)


def worker_runtime_env(hook: str, env: dict[str, str]) -> dict[str, Any]:
    """The runtime env of the tests' trial workers: `hook` (a dotted name in this folder) runs in each before its
    first trial, with `env` set."""
    return {"worker_process_setup_hook": hook, "env_vars": {"PYTHONPATH": tests_on_path(), **env}}


@contextmanager
def local_ray(root: Path, hook: str = "sweep_helpers.small_world", env: dict[str, str] | None = None) -> Iterator[None]:
    """One embedded Ray for a test module, started the way `df-sweep launch` starts it; `hook` runs in every
    worker before its first trial."""
    from dreamfusion.tune.embedded import embedded_ray

    with embedded_ray(root, worker_runtime_env(hook, {"DF_SWEEP_CACHE": str(root / "cache"), **(env or {})})):
        yield


@contextmanager
def sweep_workdir(
    path: Path, hook: str = "sweep_helpers.small_world", env: dict[str, str] | None = None
) -> Iterator[Path]:
    """A test module's working directory, as a user's shell would have it: the cwd (so `mlruns.db` and
    `ray_results` land there by default), no MLFLOW_TRACKING_URI inherited, and the module's one local Ray."""
    import pytest

    with pytest.MonkeyPatch.context() as patch, local_ray(path / "ray_results", hook, env):
        patch.chdir(path)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield path


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


def run_artifacts(client: Any, run_id: str, path: str | None = None) -> set[str]:
    """Every artifact file of a run, as paths relative to the run's artifact root."""
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= run_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def render_steps(client: Any, run_id: str) -> list[int]:
    """The step of each eval render a run logged through `log_image`, sorted, one entry per render: MLflow names it
    `images/renders+step+<step>+timestamp+…png` (older versions write `%` for `+`) beside a `.webp` thumbnail."""
    pattern = re.compile(r"images/renders[+%]step[+%](\d+)[+%].*\.png")
    return sorted(int(m[1]) for p in run_artifacts(client, run_id, "images") if (m := pattern.fullmatch(p)))
