"""Named phases of a training step, timed where they run.

The step, the renderer and the guidance mark their phases with `with phase("render/field"):`. Nothing is recorded
unless a `PhaseTimes` is recording (`benchmarks/sds_step.py` starts one), so in a trial a mark costs one
context-variable read. Because the phases are timed inside the very steps that are timed as a whole, a step is
never shorter than the sum of its phases: what remains is overhead, not a difference of measuring conditions.
Names are paths: `render/field` is a part of `render`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextvars import ContextVar
from types import TracebackType

_recording: ContextVar[PhaseTimes | None] = ContextVar("df_sweep_phase_times", default=None)


class PhaseTimes:
    """Milliseconds summed per phase name: wall time, and CPU time of the process (every thread; on a shared
    machine the CPU time is the steadier of the two)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.cpu_ms: dict[str, float] = defaultdict(float)

    def add(self, name: str, wall_s: float, cpu_s: float) -> None:
        self.ms[name] += wall_s * 1000
        self.cpu_ms[name] += cpu_s * 1000

    def __enter__(self) -> PhaseTimes:
        self._token = _recording.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _recording.reset(self._token)


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


class phase:
    """Time the block under `name` if a `PhaseTimes` is recording; otherwise do nothing."""

    __slots__ = ("name", "times", "start")

    def __init__(self, name: str) -> None:
        self.name = name
        self.times = _recording.get()

    def __enter__(self) -> None:
        if self.times is not None:
            self.start = _now()

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        if self.times is not None:
            wall, cpu = _now()
            self.times.add(self.name, wall - self.start[0], cpu - self.start[1])


class Laps:
    """Consecutive phases of one block, each timed from the previous lap: `lap = Laps()`, then `lap("render")`
    after each phase. A lap line sits between the lines it times, so timing a long function changes no indentation."""

    __slots__ = ("times", "last")

    def __init__(self) -> None:
        self.times = _recording.get()
        self.last = _now() if self.times is not None else (0.0, 0.0)

    def __call__(self, name: str) -> None:
        if self.times is not None:
            now = _now()
            self.times.add(name, now[0] - self.last[0], now[1] - self.last[1])
            self.last = now
