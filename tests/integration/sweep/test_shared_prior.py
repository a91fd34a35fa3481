"""`prior.placement: shared` in real sweeps on a real local Ray: one prior service for the node, owned by the
launch's directory. With max batch 1 the trials' metrics equal the local placement's bit for bit; a killed trial
leaves the service serving; a killed service fails its trials with the reason and Tune retries them onto a new
one. The prior is the tiny SD pipeline (tests/tiny_pipelines.py) loaded from disk as a real checkpoint; no CLIP
can judge it, so `scoring.model: none` and a toy-world prompt, ranked by the exact `gt_iou`."""

from __future__ import annotations

import copy
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import ray
from mlflow import MlflowClient
from sweep_helpers import TINY_BASE, sweep_runs, sweep_workdir
from tiny_pipelines import make_tiny_sd

from dreamfusion.serving.service import DIRECTORY
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.sweep.validate import Problems, check_space
from dreamfusion.tracking.schema import STEP_TIME, SYSTEM_PREFIX
from dreamfusion.tune.launch import launch_sweep

HELD = "7"  # trials with this seed wait at step 6 until released, the first time (sweep_helpers.faulty_world)
STEP_KEYS = ("loss", "loss_sds", "grad_norm", "t", "opacity")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("shared")
    env = {"DF_TEST_MARKERS": str(path / "markers"), "DF_TEST_HOLD_SEEDS": HELD}
    (path / "markers").mkdir()
    with sweep_workdir(path, "sweep_helpers.faulty_world", env):
        yield path


@pytest.fixture(scope="module")
def tiny_sd(workdir) -> str:
    return str(make_tiny_sd(workdir / "tiny-sd"))


def _spec(name: str, tiny_sd: str, seeds: list[int], placement: str, **prior: object) -> SweepSpec:
    base = copy.deepcopy(TINY_BASE)
    base.update(
        prompt="a red cube",
        prior={"kind": "stable-diffusion", "model": tiny_sd, "placement": placement, **prior},
        scoring={"model": "none"},
    )
    spec = SweepSpec.model_validate(
        {
            "name": name,
            "base": base,
            "space": {"seed": {"grid": seeds}},
            "tune": {"metric": "gt_iou"},
            "resources": {"cpu": 1},
            "max_failures": 1,
        }
    )
    problems = Problems()
    check_space(spec, name, problems)
    problems.raise_any()
    return spec


def _launch(workdir: Path, spec: SweepSpec):
    return launch_sweep(spec, tracking_uri=f"sqlite:///{workdir / 'mlruns.db'}", echo=lambda line: None)


def _by_seed(workdir: Path, name: str) -> dict[str, object]:
    return {r.data.params["seed"]: r for r in sweep_runs(f"sqlite:///{workdir / 'mlruns.db'}", name)[1]}


def _computed(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics the trial computes, without the process's measurements (step time, the system metrics)."""
    return {k: v for k, v in metrics.items() if k != STEP_TIME and not k.startswith(SYSTEM_PREFIX)}


def _history(workdir: Path, run, key: str) -> list[tuple[int, float]]:
    client = MlflowClient(f"sqlite:///{workdir / 'mlruns.db'}")
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)]


def _services() -> list[tuple[str, str]]:
    """(name, namespace) of the prior services alive now."""
    return [
        (a["name"], a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("df-prior-") and a["name"] != DIRECTORY
    ]


def _service_stats() -> dict[str, float]:
    [(name, namespace)] = _services()
    return ray.get(ray.get_actor(name, namespace).stats.remote())


def test_shared_placement_gives_the_local_metrics_bit_for_bit(workdir, tiny_sd):
    local = _launch(workdir, _spec("local", tiny_sd, [0, 1], "local"))
    shared = _launch(workdir, _spec("shared", tiny_sd, [0, 1], "shared", max_batch=1))
    assert local.ok and shared.ok
    runs = {name: _by_seed(workdir, name) for name in ("local", "shared")}
    assert sorted(runs["local"]) == sorted(runs["shared"]) == ["0", "1"]
    for seed, run in runs["local"].items():
        twin = runs["shared"][seed]
        assert twin.info.status == run.info.status == "FINISHED"
        assert _computed(twin.data.metrics) == _computed(run.data.metrics)
        for key in STEP_KEYS:
            assert _history(workdir, twin, key) == _history(workdir, run, key)
        assert twin.data.tags["df.component.prior"] == run.data.tags["df.component.prior"] == "stable-diffusion@1"
        assert "of the denoiser, T=1000, epsilon, float32 on cpu, served by pid" in twin.data.tags["df.prior"]
        assert twin.data.tags["df.prior.sha256"] == run.data.tags["df.prior.sha256"]  # the same weights
    assert _history(workdir, runs["local"]["0"], "loss") != _history(workdir, runs["local"]["1"], "loss")
    assert _services() == []  # the services went with the launch's directory


def _held(workdir: Path) -> dict:
    from cluster_helpers import wait_until

    def found() -> dict | None:
        markers = list((workdir / "markers").glob("*.held"))
        return json.loads(markers[0].read_text()) if markers else None

    return wait_until("a held trial", found, 600, 0.2)


def _release(workdir: Path) -> None:
    (workdir / "markers" / "release").touch()


@pytest.fixture
def markers(workdir):
    """Fresh hold markers for a fault test."""
    for marker in (workdir / "markers").iterdir():
        marker.unlink()


def test_a_killed_trial_leaves_the_service_serving(workdir, tiny_sd, markers):
    spec = _spec("trial-killed", tiny_sd, [int(HELD), 0], "shared", max_batch=2)
    with _in_background(workdir, spec) as outcome:
        held = _held(workdir)
        before = _service_stats()
        os.kill(held["pid"], signal.SIGKILL)
    assert outcome and outcome[0].ok, "the sweep did not finish"
    runs = _by_seed(workdir, "trial-killed")
    for run in runs.values():
        assert run.info.status == "FINISHED" and [s for s, _ in _history(workdir, run, "loss")] == list(range(1, 13))
    # the retry of the killed trial and the other trial both went on with the same service process
    served_by = {run.data.tags["df.prior"].split("served by pid ")[1].split()[0] for run in runs.values()}
    assert served_by == {str(int(before["pid"]))} and before["pid"] != held["pid"]


def test_a_killed_service_fails_its_trials_with_the_reason_and_tune_retries_them(workdir, tiny_sd, markers):
    spec = _spec("service-killed", tiny_sd, [int(HELD)], "shared", max_batch=1)
    with _in_background(workdir, spec) as outcome:
        _held(workdir)
        os.kill(int(_service_stats()["pid"]), signal.SIGKILL)
    assert outcome and outcome[0].ok, "the retried trial did not finish"
    [run] = _by_seed(workdir, "service-killed").values()
    assert run.info.status == "FINISHED" and [s for s, _ in _history(workdir, run, "loss")] == list(range(1, 13))
    [error] = (Path(outcome[0].launch.experiment_dir)).glob("*/error.txt")
    assert "PriorServiceError: the shared prior service df-prior-" in error.read_text()
    assert "died" in error.read_text() and "Tune retries it with a new service" in error.read_text()


@contextmanager
def _in_background(workdir: Path, spec: SweepSpec) -> Iterator[list]:
    """Launch the sweep on a thread (Tune's driver loop), do the block, release the held trial, wait for the end;
    yields the list that then holds the outcome."""
    outcome: list = []
    sweep = threading.Thread(target=lambda: outcome.append(_launch(workdir, spec)))
    sweep.start()
    try:
        yield outcome
    finally:
        _release(workdir)
        sweep.join(timeout=900)
