"""A trial's step metrics are written in the background (MLflow's asynchronous logging) and lose nothing: the run of
a trial logged so holds every step's metrics, equal to those of the same seed's trial logged synchronously, and a
trial stopped mid-way (by a Ctrl-C, or by Ray Tune) leaves every step it ran in the run. A spec's
`tracking.async_logging: false` writes each batch before the trial goes on. Small trials on the analytic prior,
real MLflow on SQLite."""

from __future__ import annotations

import threading
import time

import pytest
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sweep_helpers import TINY_BASE, small_analytic_prior

from dreamfusion.config.schema import TrialConfig
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.provenance import Provenance
from dreamfusion.tracking.schema import STEP_METRICS, SYSTEM_PREFIX, TIMING_METRICS
from dreamfusion.tracking.store import open_experiment
from dreamfusion.trial.loop import TrialCallback, run_trial
from dreamfusion.tune.launch import trial_tracker

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


def _slow_background_writes(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Each write on MLflow's writer threads takes `seconds` longer; a write on the trial's own thread does not."""
    log_batch = SqlAlchemyStore.log_batch

    def slowly(store, *args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            time.sleep(seconds)
        return log_batch(store, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", slowly)  # before the store, whose writer thread takes it


class StoredAtFlush(TrialCallback):
    """The steps of `loss` the store holds just after each flush (the tracking callback flushes before this hook)."""

    def __init__(self, uri: str) -> None:
        self.client, self.run_id = MlflowClient(uri), ""
        self.held: dict[int, list[int]] = {}

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if step % FLUSH_EVERY == 0:
            self.held[step] = [m.step for m in self.client.get_metric_history(self.run_id, "loss")]


def _spec_trial(uri: str, out, prior, async_logging: bool) -> tuple[str, dict[int, list[int]]]:
    """A trial logged by the tracker a sweep with this `tracking.async_logging` gives its trials; its run, and the
    steps its store held at each flush."""
    tracking = {"flush_every": FLUSH_EVERY, "async_logging": async_logging}
    spec = SweepSpec.model_validate({"name": "async", "tracking": tracking})
    tracker = trial_tracker(spec, uri, open_experiment(uri, "async"), "", Provenance())
    look = StoredAtFlush(uri)
    with tracker.run(str(out), out.name, False, look) as callback:
        look.run_id = callback.run_id
        run_trial(TrialConfig.model_validate(CONFIG), out, callback, prior=prior)
    return callback.run_id, look.held


def test_async_logging_off_writes_each_flush_before_the_trial_goes_on(tmp_path, prior, monkeypatch):
    """With writes in the background slowed down, a flush's steps are in the store at once only when the spec turns
    asynchronous logging off; and the two runs hold the same metrics at every step."""
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    _slow_background_writes(monkeypatch, 1.0)
    synchronous, held = _spec_trial(uri, tmp_path / "synchronous", prior, async_logging=False)
    assert held == {5: [1, 2, 3, 4, 5], 10: list(range(1, 11))}
    background, held = _spec_trial(uri, tmp_path / "background", prior, async_logging=True)
    assert 5 not in held[5] and 10 not in held[10]  # still being written
    assert _history(uri, background) == _history(uri, synchronous)


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
    _slow_background_writes(monkeypatch, 0.5)
    client = MlflowClient(uri)
    with pytest.raises(type(stop)):
        _trial(uri, tmp_path / "stopped", prior, asynchronous=True, then=Stop(stop))
    (run,) = client.search_runs([open_experiment(uri, "async")])
    assert run.info.status == status
    for key in STEP_METRICS:
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, STOPPED_AT + 1))
