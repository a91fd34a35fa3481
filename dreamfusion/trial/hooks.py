"""The trial's explicit instrumentation point: functions called before every optimisation step, with the config
and the step about to run. Fault-injection tests use it (raise, hold, kill) instead of patching the trial's code;
profilers can use it too. Hooks are per process: a Ray worker's setup hook adds them there."""

from __future__ import annotations

from collections.abc import Callable

from dreamfusion.config.schema import TrialConfig

StepHook = Callable[[TrialConfig, int], None]

_hooks: list[StepHook] = []


def add_step_hook(hook: StepHook) -> None:
    _hooks.append(hook)


def clear_step_hooks() -> None:
    _hooks.clear()


def before_step(cfg: TrialConfig, step: int) -> None:
    for hook in list(_hooks):
        hook(cfg, step)
