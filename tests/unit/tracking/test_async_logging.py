"""A trial's step metrics are written in the background (MLflow's asynchronous logging) and lose nothing: the run of
a trial logged so holds every step's metrics, equal to those of the same seed's trial logged synchronously, and a
trial stopped mid-way (by a Ctrl-C, or by Ray Tune) leaves every step it ran in the run. Small trials on the
analytic prior, real MLflow on SQLite."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sweep_helpers import TINY_BASE, small_analytic_prior

from dreamfusion.config.schema import TrialConfig
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.schema import STEP_METRICS, SYSTEM_PREFIX, TIMING_METRICS
from dreamfusion.tracking.store import open_experiment
from dreamfusion.trial.loop import TrialCallback, run_trial

STEPS, FLUSH_EVERY, STOPPED_AT = 12, 5, 7
CONFIG = {**TINY_BASE, "prompt": "a red cube", "steps": STEPS, "seed": 3, "device": "cpu", "export": {"video": False}}


@pytest.fixture(scope="module")
def prior():
    return small_analytic_prior()


class Writes:
    """Whether each `log_batch` of metrics the trial's callback makes is asynchronous."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.background: list[bool] = []
        log_batch = MlflowClient.log_batch

        def spy(client, run_id, metrics=(), params=(), tags=(), synchronous=None):
            if metrics:
                self.background.append(synchronous is False)
            return log_batch(client, run_id, metrics=metrics, params=params, tags=tags, synchronous=synchronous)

        monkeypatch.setattr(MlflowClient, "log_batch", spy)


def _trial(uri: str, out, prior, asynchronous: bool, then: TrialCallback | None = None) -> str:
    tracker = TrialTracker(uri, open_experiment(uri, "async"), flush_every=FLUSH_EVERY, asynchronous=asynchronous)
    with tracker.run(str(out), out.name, False, then) as callback:
        run_trial(TrialConfig.model_validate(CONFIG), out, callback, prior=prior)
    return callback.run_id


def _history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    """Every metric's (step, value) points, but for timings and the process's resources, which no seed fixes."""
    client = MlflowClient(uri)
    keys = [
        k for k in client.get_run(run_id).data.metrics if k not in TIMING_METRICS and not k.startswith(SYSTEM_PREFIX)
    ]
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def test_an_asynchronous_run_holds_every_step_of_the_synchronous_one(tmp_path, prior, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    writes = Writes(monkeypatch)
    background = _history(uri, _trial(uri, tmp_path / "background", prior, asynchronous=True))
    # steps 1-4, 5, 6-8, 9-10 and 11-12 (each eval flushes them), while each eval's own metrics are written at once
    assert writes.background.count(True) >= 5 and not all(writes.background)
    writes.background.clear()
    synchronous = _history(uri, _trial(uri, tmp_path / "synchronous", prior, asynchronous=False))
    assert writes.background and not any(writes.background)
    for key in ("loss", "grad_norm", "t"):
        assert [step for step, _ in background[key]] == list(range(1, STEPS + 1))  # each step once
    assert {"clip_score", "clip_r_precision"} <= set(background)
    assert background == synchronous


class Stop(TrialCallback):
    """Stops the trial at a step as a Ctrl-C does, or as Ray Tune does (`SystemExit`: the run is left RUNNING for
    the driver to close, so MLflow's own wait as a run ends does not come)."""

    def __init__(self, stop: BaseException) -> None:
        self.stop = stop

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step == STOPPED_AT:
            raise self.stop


@pytest.mark.parametrize(
    "stop, status", [(KeyboardInterrupt(), "FAILED"), (SystemExit(0), "RUNNING")], ids=["ctrl-c", "tune"]
)
def test_a_stopped_trial_leaves_every_step_it_ran_in_the_run(tmp_path, prior, monkeypatch, stop, status):
    """Step 5 was being written in the background, slowly, and 6-7 were pending when the trial was stopped: the
    trial stops once they are in."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    log_batch = SqlAlchemyStore.log_batch

    def slowly(store, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
        return log_batch(store, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", slowly)  # before the store, whose writer thread takes it
    client = MlflowClient(uri)
    with pytest.raises(type(stop)):
        _trial(uri, tmp_path / "stopped", prior, asynchronous=True, then=Stop(stop))
    (run,) = client.search_runs([open_experiment(uri, "async")])
    assert run.info.status == status
    for key in STEP_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, STOPPED_AT + 1))
