"""A trial's progress as `df-sweep run` shows it, beside the lines a sweep's trials print (`progress.py`): on a
terminal one bar redrawn in place, so that a long trial does not scroll its evaluations away; in a log a line at
a steady pace, so that a captured run is readable afterwards."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from dreamfusion.config.schema import TrialConfig
from dreamfusion.console.progress import LOG_EVERY_S, StepRate, eval_line
from dreamfusion.trial.loop import TrialCallback, TrialInfo

Echo = Callable[[str], None]
#: How often a terminal's progress bar is redrawn.
BAR_REDRAW_S = 0.1


class ConsoleProgress(TrialCallback):
    """Progress of one trial: which models ran, a bar with the step rate and the ETA (redrawn in place on a
    terminal, a line every LOG_EVERY_S in a log), and a line per eval with its metrics."""

    def __init__(self, total: int, echo: Echo, tty: bool | None = None) -> None:
        self.total, self.echo = total, echo
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = self.shown = time.perf_counter()
        self.rate = StepRate(total, 0, self.started)
        self.width = 0  # of the bar last drawn in place, which the next line must cover

    def on_start(self, cfg: TrialConfig, start_step: int, info: TrialInfo) -> None:
        self.echo(f"prior: {info.prior}")
        self.echo(f"scorer: {info.scorer}")
        self.echo("sds: " + ", ".join(f"{k} {info.components[k]}" for k in ("loss", "schedule", "weighting")))
        if start_step:
            self.echo(f"resuming at step {start_step}")
        self.rate = StepRate(self.total, start_step, time.perf_counter())

    def on_step(self, step: int, metrics: dict[str, float]) -> None:
        now = time.perf_counter()
        if now - self.shown < (BAR_REDRAW_S if self.tty else LOG_EVERY_S) and step < self.total:
            return
        self.shown = now
        line = f"{self.rate.bar(step, now)}  loss {metrics['loss']:.4f}  t {metrics['t']:.0f}"
        if self.tty:
            sys.stderr.write(f"\r{line}")
            self.width = len(line)
        else:
            self.echo(line)

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        line = eval_line(step, self.total, time.perf_counter() - self.started, metrics)
        self.echo(f"\r{line:<{self.width}}" if self.tty else line)
