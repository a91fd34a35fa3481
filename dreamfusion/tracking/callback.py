"""The trial side of tracking: a `TrialCallback` that logs one trial into its MLflow run, opened inside the trial
(on a Ray worker for sweeps) so that renders go in from where they are written.

Everything goes through an explicit `MlflowClient(uri)`, never MLflow's global active run: a worker runs many
trials one after another, and a global run would leak from one into the next. A trial that Ray retries or that
`df-sweep resume` restores finds its run again by its `df.trial_id` tag and continues it, skipping the steps the
run already holds, so no run and no metric point is ever logged twice.

Step metrics are written in the background (MLflow's asynchronous logging), one batch at a time and in step order,
while the trial goes on; each eval, the end of the trial and a Ctrl-C wait for them. So whatever a checkpoint holds
is in the store before Tune hears of it, and a resume skips only steps the run really holds.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamfusion.config.schema import TrialConfig
from dreamfusion.interrupts import held_interrupt
from dreamfusion.tracking.params import logged_params
from dreamfusion.tracking.provenance import Provenance
from dreamfusion.tracking.runs import MAX_TAG_VALUE, end_run, failure_reason, reopen_run
from dreamfusion.tracking.schema import (
    DEVICE_TAG,
    FINAL_DIR,
    HOST_TAG,
    LEVELS_SEPARATOR,
    OTHER_METRIC_PREFIXES,
    PARENT_TAG,
    PRIOR_HASH_TAG,
    PRIOR_TAG,
    RENDERS_IMAGE_KEY,
    SCORER_TAG,
    STEP_METRICS,
    TRIAL_KEY_TAG,
    component_tag,
    direction_tag,
    levels_tag,
)
from dreamfusion.tracking.store import client
from dreamfusion.tracking.system import SystemSampler
from dreamfusion.trial.loop import TrialCallback, TrialInfo, TrialResult

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Run
    from mlflow.utils.async_logging.run_operations import RunOperations

MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000


@dataclass(frozen=True)
class TrialTracker:
    """Where a trial logs, and the provenance the driver took: small and picklable, so the sweep driver can ship it
    to its Ray workers."""

    uri: str
    experiment_id: str
    parent_run_id: str | None = None
    flush_every: int = 25
    provenance: Provenance = Provenance()
    system_every_s: float = 2.0
    #: False: each batch of step metrics is written before the trial goes on (a spec's `tracking.async_logging`).
    asynchronous: bool = True

    @contextmanager
    def run(
        self,
        key: str,
        name: str,
        continue_existing: bool,
        then: TrialCallback | None = None,
        tags: dict[str, str] | None = None,
    ) -> Iterator[TrackingCallback]:
        """The trial's run, ended FINISHED or FAILED by whatever ends the trial, except a clean `SystemExit`: that
        is how Ray Tune stops a trial, for its scheduler or for an interrupted launch alike, and only the driver
        can tell which, so it leaves the run RUNNING for the driver's `close_runs`. `tags` are set each time the
        run opens: a retried trial's `df.node` names the node it ran on last. A new run records the provenance; a
        continued one records whether the code changed since."""
        mlflow = client(self.uri)
        existing = self._find(key) if continue_existing else None
        if existing is None:
            identity = {TRIAL_KEY_TAG: key, **({PARENT_TAG: self.parent_run_id} if self.parent_run_id else {})}
            run_id = mlflow.create_run(self.experiment_id, run_name=name, tags=identity).info.run_id
            self.provenance.record(mlflow, run_id)
        else:
            run_id = existing.info.run_id
            reopen_run(self.uri, run_id)
            self.provenance.record_change(mlflow, run_id, existing.data.tags, "continued")
        for tag, value in {HOST_TAG: socket.gethostname(), **(tags or {})}.items():
            mlflow.set_tag(run_id, tag, value)
        callback = TrackingCallback(mlflow, run_id, self.flush_every, then, existing, self.asynchronous)
        callback.system = SystemSampler(self.system_every_s).start()
        try:
            yield callback
        except SystemExit as exc:
            _record_stop(callback, self.uri, run_id, None if exc.code in (0, None) else failure_reason(exc))
            raise
        except BaseException as exc:
            _record_stop(callback, self.uri, run_id, failure_reason(exc))
            raise
        with held_interrupt():
            callback.close()
            end_run(self.uri, run_id)

    def _find(self, key: str) -> Run | None:
        query = f"tags.`{TRIAL_KEY_TAG}` = '{key}'"
        if self.parent_run_id:
            query += f" and tags.{PARENT_TAG} = '{self.parent_run_id}'"
        found = client(self.uri).search_runs([self.experiment_id], query, max_results=1)
        return found[0] if found else None


def _record_stop(callback: TrackingCallback, uri: str, run_id: str, failure: str | None) -> None:
    """Write what the stopped trial logged and, for a failure, end its run FAILED with the reason, as far as the
    store lets us: when the store is what failed, the trial's own error is the one to raise, and the driver (or a
    resume) closes the run."""
    with held_interrupt(), contextlib.suppress(Exception):
        callback.close()
        if failure is not None:
            end_run(uri, run_id, failure)


def _last_step(mlflow: MlflowClient, run_id: str, key: str) -> int:
    return max((m.step for m in mlflow.get_metric_history(run_id, key)), default=0)


def _last_eval_step(mlflow: MlflowClient, run: Run) -> int:
    """The last step a continued run holds evaluation metrics for (any metric the steps do not log)."""
    evals = [k for k in run.data.metrics if k not in STEP_METRICS and not k.startswith(OTHER_METRIC_PREFIXES)]
    return max((_last_step(mlflow, run.info.run_id, k) for k in evals), default=0)


class TrackingCallback(TrialCallback):
    """Logs a trial into its run, then hands every hook on to `then` (the console, or Ray Tune's reporter):
    the run holds an eval before Tune may stop the trial at that eval's report."""

    def __init__(
        self,
        mlflow: MlflowClient,
        run_id: str,
        flush_every: int,
        then: TrialCallback | None = None,
        existing: Run | None = None,
        asynchronous: bool = True,
    ) -> None:
        self.mlflow, self.run_id, self.flush_every, self.asynchronous = mlflow, run_id, flush_every, asynchronous
        self.then = then or TrialCallback()
        self.fresh = existing is None or not existing.data.params
        self.previous_tags: dict[str, str] = dict(existing.data.tags) if existing else {}
        # What a continued run already holds: its steps are skipped, so no metric point is ever logged twice.
        self.logged_step = _last_step(mlflow, run_id, "loss") if existing else 0
        self.logged_eval_step = _last_eval_step(mlflow, existing) if existing else 0
        self.logged_eval_keys: set[str] = set(existing.data.metrics) if existing else set()
        self.logged_image_step = self.logged_eval_step
        self.pending: list[Metric] = []  # step metrics not yet written
        self.writing: tuple[list[RunOperations], list[Metric]] = ([], [])  # the batch written in the background
        self.system: SystemSampler | None = None  # the trial process's resources, written with each flush

    def set_tag(self, key: str, value: str) -> None:
        with held_interrupt():
            self.mlflow.set_tag(self.run_id, key, value[:MAX_TAG_VALUE])

    def log_text(self, text: str, path: str) -> None:
        with held_interrupt():
            self.mlflow.log_text(self.run_id, text, path)

    def log_values(self, values: dict[str, float], step: int) -> None:
        """Metrics outside the step and eval bookkeeping (PBT's mutated values), written at once."""
        with held_interrupt():
            self._write(_metrics(values, step))

    def on_start(self, cfg: TrialConfig, start_step: int, info: TrialInfo) -> None:
        with held_interrupt():
            self._log_start(cfg, info)
        self.then.on_start(cfg, start_step, info)

    def _log_start(self, cfg: TrialConfig, info: TrialInfo) -> None:
        from mlflow.entities import Param, RunTag

        params = [Param(k, v) for k, v in logged_params(cfg).items()]
        tags = {
            PRIOR_TAG: info.prior,
            SCORER_TAG: info.scorer,
            PRIOR_HASH_TAG: info.prior_hash,
            DEVICE_TAG: info.device,
            **{component_tag(kind): label for kind, label in info.components.items()},
            **{direction_tag(name): m.mode for name, m in info.metrics.items() if m.ranked},
            **{levels_tag(name): LEVELS_SEPARATOR.join(m.levels) for name, m in info.metrics.items() if m.levels},
        }
        for i in range(0, len(params) if self.fresh else 0, MAX_PARAMS_PER_BATCH):
            self.mlflow.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        self.mlflow.log_batch(self.run_id, tags=[RunTag(k, v[:MAX_TAG_VALUE]) for k, v in tags.items()])

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        if self.system is not None:
            self.system.step = step
        if step > self.logged_step:
            self.pending += _metrics(metrics, step)
            if step % self.flush_every == 0:
                self.flush()
        self.then.on_step(step, metrics)

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        from PIL import Image

        with held_interrupt():
            self._log_eval(step, metrics)
            if step > self.logged_image_step:  # once per step: MLflow's image viewer steps through them
                with Image.open(render_path) as image:
                    self.mlflow.log_image(self.run_id, image.convert("RGB"), key=RENDERS_IMAGE_KEY, step=step)
                self.logged_image_step = step
        self.then.on_eval(step, metrics, render_path, checkpoint)

    def on_end(self, result: TrialResult) -> None:
        with held_interrupt():
            self._log_eval(result.steps, result.metrics)  # the last eval's metrics, and any final-only ones
            self.mlflow.log_artifact(self.run_id, str(result.artifacts["config"]))
            for name, path in result.artifacts.items():  # views, turntables, metrics, and the weights and mesh if made
                if name != "config":
                    self.mlflow.log_artifact(self.run_id, str(path), FINAL_DIR)
        self.then.on_end(result)

    def _log_eval(self, step: int, metrics: dict[str, float]) -> None:
        """Each metric once per step: a resumed trial repeats evals its run already holds, and the final
        metrics repeat the last eval's and add their own (the ground truth's R-precision, say). The steps before
        are in the store first: the checkpoint this eval reports with holds them."""
        self.flush()
        self.wait()
        if step > self.logged_eval_step:
            self.logged_eval_step, self.logged_eval_keys = step, set()
        if step == self.logged_eval_step:
            new = {k: v for k, v in metrics.items() if k not in self.logged_eval_keys}
            self._write(_metrics(new, step))
            self.logged_eval_keys |= set(new)

    def flush(self) -> None:
        """Write the batched step metrics (one `log_batch` per flush_every steps, not one call per value) and the
        system samples taken since the last flush, in the background once the batch before is in (in step order:
        a resume skips the steps its run holds, so none may be held without those before it). Step metrics stay
        pending until written: a Ctrl-C inside the write, or a batch the store refused, leaves them for the flush
        that closes the run (system samples are not kept: the next ones follow)."""
        system = self._system_metrics()
        if not self.pending and not system:
            return
        batch = self.pending + system
        # more than one `log_batch` would go to MLflow's writer threads at once, in any order: written here, in order
        synchronous = not self.asynchronous or len(batch) > MAX_METRICS_PER_BATCH
        with held_interrupt():
            self.wait()
            writes = self._write(batch, synchronous)
            self.writing, self.pending = (writes, self.pending), []
            if synchronous:
                self.wait()

    def wait(self) -> None:
        """Until the batch written in the background is in the store; one it refused goes back to pending, and
        the refusal is raised."""
        (writes, batch), self.writing = self.writing, ([], [])
        with held_interrupt():  # a Ctrl-C is raised once the batch is known written or refused, not in between
            try:
                for write in writes:
                    write.wait()
            except Exception:  # MLflow's RunOperations error, whatever the store raised
                self.pending = batch + self.pending
                raise
            if batch:
                self.logged_step = max(m.step for m in batch)

    def close(self) -> None:
        """The last system sample (the trial's peak memory as it ends), then everything not yet written, and the
        wait until it is in the store: the run ends after its metrics."""
        if self.system is not None:
            self.system.stop()
        self.flush()
        self.wait()

    def _system_metrics(self) -> list[Metric]:
        from mlflow.entities import Metric

        samples = self.system.drain() if self.system is not None else []
        return [Metric(k, float(v), ms, step) for ms, step, values in samples for k, v in values.items()]

    def _write(self, metrics: list[Any], synchronous: bool = True) -> list[RunOperations]:
        """`log_batch` of the metrics, as MLflow takes them; asynchronously, their writes to wait for."""
        writes = []
        for i in range(0, len(metrics), MAX_METRICS_PER_BATCH):
            batch = metrics[i : i + MAX_METRICS_PER_BATCH]
            writes.append(self.mlflow.log_batch(self.run_id, metrics=batch, synchronous=synchronous))
        return [w for w in writes if w is not None]  # a synchronous write returns nothing: it is done


def _metrics(values: dict[str, float], step: int) -> list[Metric]:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step) for k, v in values.items()]
