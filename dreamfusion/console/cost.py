"""What a sweep will cost before it runs: CPU- or GPU-hours from step times measured per prior, NeRF size and
device (`step_times.json`, written by `benchmarks/step_times.py`: CPU time of one torch thread on a CPU, which a
shared machine's load does not stretch; wall time on a GPU), scaled to each trial's settings.

A trial costs `steps` steps, an evaluation every `eval.every` steps (`eval.views` views, each rendered in colour
and textureless and scored) and the final turntable. Measured at 32 px, 32 samples per ray and one view per step;
a trial's own settings scale the time linearly in views per step and in rendered samples (pixels x samples per
ray), which is what rendering costs, and over-states the prior's share when they grow. Steps are measured with
SDS, two images per view through the denoiser (its guided pair); a loss that runs more (`Loss.prior_calls_per_step`:
ISM 8, SDI 22 with their defaults) adds the measured time of one image (`denoiser_ms`) for each. Sampled dimensions
stand in at their middle, each listed value of a choice equally likely.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dreamfusion.config.schema import TrialConfig
from dreamfusion.console.progress import duration
from dreamfusion.sds.loss import make_loss
from dreamfusion.sweep.space import combinations, count
from dreamfusion.sweep.spec import SweepSpec

TABLE = Path(__file__).with_name("step_times.json")
REFERENCE_PIXELS, REFERENCE_SAMPLES = 32 * 32, 32
#: Images per view per step through the denoiser in a measured step: SDS's guided pair.
MEASURED_PRIOR_CALLS = 2
#: Beyond this many stand-in combinations, no estimate (it would take longer than the dry run should).
MAX_ESTIMATED = 4096


@dataclass(frozen=True)
class StepTime:
    """Milliseconds at the reference settings: one step, one eval view (colour + textureless + scoring), one
    turntable frame, and one image through the denoiser (None: not measured)."""

    step_ms: float
    eval_view_ms: float
    frame_ms: float
    denoiser_ms: float | None = None


@lru_cache(maxsize=1)
def table() -> tuple[dict[tuple[str, str, str], StepTime | None], str]:
    """(prior, nerf size, device) → measured times (None: not yet measured), and where they were measured."""
    data = json.loads(TABLE.read_text())
    rows = {
        (r["prior"], r["nerf"], r["device"]): StepTime(
            r["step_ms"], r["eval_view_ms"], r["frame_ms"], r.get("denoiser_ms")
        )
        if r.get("step_ms") is not None
        else None
        for r in data["rows"]
    }
    return rows, data["measured"]


def step_ms(cfg: TrialConfig, t: StepTime) -> float | None:
    """One view's step at the reference settings with the trial's loss: the measured SDS step plus one denoiser image
    for each image more the loss runs per view; None where that is needed and `denoiser_ms` was not measured."""
    extra = make_loss(cfg.sds).prior_calls_per_step() - MEASURED_PRIOR_CALLS
    if extra <= 0:
        return t.step_ms
    return None if t.denoiser_ms is None else t.step_ms + extra * t.denoiser_ms


def trial_seconds(cfg: TrialConfig, t: StepTime) -> float | None:
    """None where the step time of the trial's loss is not known (`step_ms`)."""
    step = step_ms(cfg, t)
    if step is None:
        return None
    scale = cfg.render.resolution**2 / REFERENCE_PIXELS * cfg.render.samples_per_ray / REFERENCE_SAMPLES
    evals = math.ceil(cfg.steps / cfg.eval.every)
    ms = (
        cfg.steps * step * cfg.render.views_per_step
        + evals * cfg.eval.views * t.eval_view_ms
        + cfg.eval.turntable_frames * t.frame_ms
    )
    return ms * scale / 1000


@dataclass
class Estimate:
    trial_s: float  # summed over the sweep's trials
    trials: int
    device: str
    per_trial: float  # CPUs or GPUs a trial holds
    missing: set[tuple[str, str, str]]

    @property
    def hours(self) -> float:
        return self.trial_s * self.per_trial / 3600


def estimate(spec: SweepSpec) -> Estimate | None:
    """The sweep's summed trial time, or None when there are too many stand-in combinations to add up."""
    device = "gpu" if spec.resources.gpu > 0 else "cpu"
    options = {k: d.middle() for k, d in spec.space.items()}
    if count(spec.space, options) > MAX_ESTIMATED:
        return None
    rows, _ = table()
    total, missing = 0.0, set[tuple[str, str, str]]()
    for values in combinations(spec.space, options):
        cfg = spec.trial_config(values)
        key = (cfg.prior.kind, str(cfg.nerf.size), device)
        times = rows.get(key)
        seconds = None if times is None else trial_seconds(cfg, times)
        if seconds is None:
            missing.add(key)
            continue
        total += _weight(spec, values) * seconds
    per_trial = spec.resources.gpu if device == "gpu" else spec.resources.cpu
    return Estimate(total * spec.tune.num_samples, spec.num_trials(), device, per_trial, missing)


def _weight(spec: SweepSpec, values: dict[str, Any]) -> float:
    """How much of one trial a stand-in combination is: every grid value runs, a choice's values share."""
    return math.prod(1 / len(spec.space[k].argument) for k in values if spec.space[k].kind == "choice")


def cost_lines(spec: SweepSpec, slots: int | None = None) -> list[str]:
    """`cost: ~0.52 CPU-hours (30 trials, ~62 s each on 1 CPU; ~16m wall on 2 slots) ...` or why there is none."""
    found = estimate(spec)
    if found is None:
        return [f"cost: not estimated (more than {MAX_ESTIMATED} combinations of the sampled dimensions)"]
    _, measured = table()
    if found.missing:
        what = ", ".join(f"{p}/{n} on {d}" for p, n, d in sorted(found.missing))
        return [
            f"cost: not estimated: no measured step time (or denoiser time, for a loss beyond SDS's two images per "
            f"view) for {what} yet (benchmarks/step_times.py measures it)"
        ]
    unit = "GPU" if found.device == "gpu" else "CPU"
    each = found.trial_s / max(found.trials, 1)
    wall = f"; ~{duration(found.trial_s / slots)} wall on {slots} slot(s)" if slots else ""
    early = " at most (early stopping ends some sooner)" if spec.tune.scheduler in ("asha", "hyperband") else ""
    return [
        f"cost: ~{found.hours:.2f} {unit}-hours{early} ({found.trials} trials, ~{each:.0f} s each on "
        f"{found.per_trial:g} {unit}{wall}); step times measured {measured}"
    ]
