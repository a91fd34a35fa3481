"""The driver's view of a running sweep: a Tune callback that prints trials done / running / pending, the elapsed
time and an ETA (`SweepClock` of `dreamfusion/console/progress.py`) whenever a trial ends and at least every
`LOG_EVERY_S` between."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback

from dreamfusion.console.progress import LOG_EVERY_S, SweepClock

FINISHED = ("TERMINATED", "ERROR")


class SweepMonitor(Callback):
    def __init__(self, total: int, every_s: float = LOG_EVERY_S) -> None:
        self.total, self.every_s = total, every_s
        self.clock = SweepClock(total)
        self.finished: set[str] = set()
        self.printed = 0.0

    def setup(self, *args: Any, **info: Any) -> None:
        """A resumed sweep is timed from its resume: Tune restores this callback as it was pickled."""
        self.clock, self.finished = SweepClock(self.total), set()
        self.printed = time.monotonic()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.clock.trial_started(trial.trial_id, time.monotonic())

    def on_trial_restore(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.clock.trial_started(trial.trial_id, time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._stopped(trials, trial, finished=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._stopped(trials, trial, finished=True)  # out of retries: it will not run again

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Trials paused by a scheduler (HyperBand, PBT) leave `running`; then, a line if one is due."""
        now = time.monotonic()
        for trial in trials:
            if trial.status != "RUNNING" and trial.trial_id in self.clock.running_since:
                self.clock.trial_stopped(trial.trial_id, now, finished=False)
        if now - self.printed >= self.every_s:
            self._print(trials, now)

    def _stopped(self, trials: list[Any], trial: Any, finished: bool) -> None:
        now = time.monotonic()
        self.clock.trial_stopped(trial.trial_id, now, finished)
        self.finished.add(trial.trial_id)
        self._print(trials, now)

    def _print(self, trials: list[Any], now: float) -> None:
        """Done: what ended in this run, and what had ended before a resume."""
        done = len(self.finished | {t.trial_id for t in trials if t.status in FINISHED})
        print(self.clock.line(done, now), flush=True)
        self.printed = now
