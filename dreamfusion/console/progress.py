"""Progress you can act on: how far along a trial or a sweep is, how fast it goes and when it will be done, as
lines for a terminal or a log. No Ray here: `dreamfusion/tune/monitor.py` feeds a sweep's trial states from
Tune's loop, and `df-sweep run` feeds a trial's steps."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

#: A log (not a terminal) gets a progress line at least this often, so no long command looks hung.
LOG_EVERY_S = 15.0
BAR_WIDTH = 20
#: How a sweep trial's lines begin (`[trial <id> <name>] step 100/400 ...`); Ray's log deduplication, which would
#: fold lines of different workers that differ only in numbers into one, passes lines matching this by.
TRIAL_LINE_REGEX = r"^\[trial "


def duration(seconds: float) -> str:
    """`45s`, `12m05s`, `3h07m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def trial_line(label: str, line: str) -> str:
    return f"[trial {label}] {line}"


def eval_line(step: int, total: int, elapsed_s: float, metrics: dict[str, float]) -> str:
    """`step 100/400 [12s]  clip_score 0.312  gt_iou 0.804`: an evaluation, as `df-sweep run` and sweep trials
    print it."""
    shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    return f"step {step}/{total} [{elapsed_s:.0f}s]  {shown}"


@dataclass
class StepRate:
    """Steps per second since this process started the trial (evaluations included; a resumed trial's earlier
    steps do not count), and the time the rest will take at that rate."""

    total: int
    start_step: int
    started: float

    def rate(self, step: int, now: float) -> float:
        return (step - self.start_step) / max(now - self.started, 1e-9)

    def bar(self, step: int, now: float) -> str:
        """`step 120/400 [######--------------]  30%  3.1 steps/s  ETA 1m30s`."""
        total = max(self.total, 1)
        filled = BAR_WIDTH * step // total
        rate = self.rate(step, now)
        eta = duration((self.total - step) / rate) if rate > 0 else "?"
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"step {step}/{self.total} [{bar}] {100 * step // total:3d}%  {rate:.1f} steps/s  ETA {eta}"


@dataclass
class SweepClock:
    """A sweep's trials as done / running / pending, its elapsed time, and an ETA from the durations of the trials
    finished so far: the work left (each running trial's expected remainder, each pending trial's mean duration)
    spread over the trials that run at once."""

    total: int
    started: float = field(default_factory=time.monotonic)
    running_since: dict[str, float] = field(default_factory=dict)
    durations: list[float] = field(default_factory=list)
    most_at_once: int = 1

    def trial_started(self, trial_id: str, now: float) -> None:
        self.running_since[trial_id] = now
        self.most_at_once = max(self.most_at_once, len(self.running_since))

    def trial_stopped(self, trial_id: str, now: float, finished: bool) -> None:
        """A trial that finished (or failed) counts towards the ETA; one paused (HyperBand, PBT) will run again."""
        begun = self.running_since.pop(trial_id, None)
        if finished and begun is not None:
            self.durations.append(now - begun)

    def eta(self, pending: int, now: float) -> str:
        if not self.durations:
            return "after the first trial finishes"
        mean = statistics.mean(self.durations)
        left = sum(max(0.0, mean - (now - t)) for t in self.running_since.values()) + pending * mean
        return duration(left / self.most_at_once)

    def line(self, done: int, now: float) -> str:
        running = len(self.running_since)
        pending = max(0, self.total - done - running)
        return (
            f"trials: {done}/{self.total} done, {running} running, {pending} pending; "
            f"elapsed {duration(now - self.started)}; ETA {self.eta(pending, now)}"
        )
