"""Where the time of an SDS step goes, measured inside the steps themselves, and what the Jacobian SDS drops costs.

    python benchmarks/sds_step.py [--prior auto|analytic|toyworld|PATH] [--steps 40] [--warmup 10] [--threads 1]
                                  [--profile] [--set key=value ...]

Runs real training steps of one default trial in two arms, in turn step by step in one process: every `speed.*`
switch off (the step as it was before them) and the defaults. Inside those steps it times each phase that the
step, the renderer and the guidance mark (`dreamfusion/timing.py`): same occupancy state, views, threads and
caches as the step they belong to. The floor is the two costs no implementation avoids, the render (forward and
backward) and the prior's CFG forward; it is a part of the step, so step ≥ floor by construction and the remainder
is overhead. The render's time is broken down into rays and sampling, the field at the occupied samples,
compositing, normals, shading, and the backward pass. `--profile` adds torch.profiler's table of the top operators
of the defaults over as many steps (for the backward's own breakdown).

Times are the process's CPU time (user + system, every thread) and wall time, as the mean per step; on a shared
machine read the CPU column (wall time then measures the neighbours too). Prints each arm's phase table, the two
side by side, peak memory and the load average, and as its last line (CPU time)
    step_over_floor=<x> jacobian_over_sds=<y> step_speedup=<off / on> step_ms=<on> step_ms_off=<off>
    render_speedup=<render forward+backward off / on>
step_over_floor = step / (render forward+backward + prior CFG forward) of the defaults ≥ 1 (target ≤ 1.15);
jacobian_over_sds = the step with the full UNet Jacobian / the SDS step (the seed's point: ≥ 2.5 with a neural
prior); step_speedup target ≥ 3.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource

import torch
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.config.schema import PriorConfig, SpeedConfig, TrialConfig
from dreamfusion.priors.base import Prior, load_prior
from dreamfusion.timing import PhaseTimes, phase
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import SDSStep

INTRO = """
One default trial's SDS steps ("a blue cone") with every `speed.*` switch off and with the defaults, in turn step by
step, timed phase by phase inside the steps themselves (`dreamfusion/timing.py`), CPU time per step; the floor is
the render (forward and backward) and the prior's CFG forward, which no implementation avoids. The Jacobian step
keeps the UNet's Jacobian that SDS drops.
"""

#: Rows of the table: (phase name as marked in the code, label); indented rows are parts of the row above.
ROWS = [
    ("occupancy", "occupancy refresh"),
    ("cameras", "cameras, lights"),
    ("render", "render forward"),
    ("render/rays", "  rays, sampling"),
    ("render/field", "  field (occupied)"),
    ("render/composite", "  compositing"),
    ("render/normals", "  normals"),
    ("render/shade", "  shading"),
    ("sds", "SDS loss"),
    ("sds/prior", "  prior CFG forward"),
    ("regularisers", "regularisers"),
    ("backward", "backward"),
    ("optimiser", "optimiser"),
]


#: The costs no implementation avoids: the render, forward and backward, and the prior's CFG forward.
FLOOR = ("render", "backward", "sds/prior")


class Measured:
    """The steps of one arm's trial, each timed as a whole (wall and CPU), with the phases recorded inside them."""

    def __init__(self, cfg: TrialConfig, prior: Prior, warmup: int) -> None:
        self.cfg, self.prior = cfg, prior
        self.state, self.step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
        self.phases, self.steps = PhaseTimes(), 0
        self.run(warmup, timed=False)

    def run(self, steps: int, timed: bool = True) -> None:
        self.prior.use_speed(self.cfg.speed)  # one prior serves both arms: each step computes ε̂ its arm's way
        with self.phases if timed else contextlib.nullcontext():
            for _ in range(steps):
                with phase("step"):
                    self.step(self.state)
        self.steps += steps if timed else 0

    @property
    def occupied(self) -> float:
        return self.state.occupancy.fraction()

    def ms(self, name: str, cpu: bool = True) -> float:
        """Mean ms per step of a phase, CPU (all threads) or wall; 0 when it did not run."""
        return (self.phases.cpu_ms if cpu else self.phases.ms).get(name, 0.0) / self.steps

    def floor(self, cpu: bool = True) -> float:
        return sum(self.ms(name, cpu) for name in FLOOR)

    def render(self) -> float:
        """The render's CPU ms per step, forward and backward."""
        return self.ms("render") + self.ms("backward")


def measure(cfgs: list[TrialConfig], prior: Prior, steps: int, warmup: int) -> list[Measured]:
    """The arms' steps in turn, one step each, so that a change in the machine's load hits every arm alike."""
    arms = [Measured(cfg, prior, warmup) for cfg in cfgs]
    for _ in range(steps):
        for arm in arms:
            arm.run(1)
    return arms


def table(m: Measured) -> list[str]:
    step_cpu = m.ms("step")
    lines = [f"{'phase':24s} {'CPU ms':>8s} {'wall ms':>8s} {'share':>6s}"]
    for name, label in ROWS:
        lines.append(f"{label:24s} {m.ms(name):8.1f} {m.ms(name, False):8.1f} {m.ms(name) / step_cpu:6.1%}")
    marked = [sum(m.ms(name, cpu) for name, _ in ROWS if "/" not in name) for cpu in (True, False)]
    over = [m.ms("step", cpu) - marked[i] for i, cpu in enumerate((True, False))]
    render = m.render()
    parts = ", ".join(
        f"{label.strip()} {m.ms(name) / render:.0%}" for name, label in ROWS if name.startswith("render/")
    )
    lines += [
        f"{'overhead (unmarked)':24s} {over[0]:8.1f} {over[1]:8.1f} {over[0] / step_cpu:6.1%}",
        f"{'SDS step':24s} {step_cpu:8.1f} {m.ms('step', False):8.1f} {1:6.1%}",
        "",
        f"render forward+backward {render:.1f} CPU ms: {parts}, backward {m.ms('backward') / render:.0%}",
        f"floor (render forward+backward + prior CFG forward) {m.floor():.1f} CPU ms; occupied cells {m.occupied:.1%}",
    ]
    return lines


def speed_off() -> list[str]:
    return [f"{k}={v}" for k, v in SpeedConfig.off().items()]


def switch_table(off: Measured, on: Measured) -> list[str]:
    """Per phase, CPU ms with every switch off and with the defaults, and the ratio."""
    lines = [f"{'phase':24s} {'off ms':>8s} {'on ms':>8s} {'off/on':>6s}"]
    rows = [*ROWS, ("step", "SDS step")]
    for name, label in rows:
        a, b = off.ms(name), on.ms(name)
        lines.append(f"{label:24s} {a:8.1f} {b:8.1f} {a / b if b else float('inf'):6.2f}")
    lines.append(
        f"{'render forward+backward':24s} {off.render():8.1f} {on.render():8.1f} {off.render() / on.render():6.2f}"
    )
    return lines


def profile_table(cfg: TrialConfig, prior: Prior, steps: int) -> str:
    from torch.profiler import ProfilerActivity, profile

    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    step(state)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step(state)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="auto", help="auto: toyworld when its weights are installed, else analytic")
    ap.add_argument("--steps", type=int, default=40, help="measured steps (each phase is summed over them)")
    ap.add_argument("--warmup", type=int, default=10, help="steps trained before measuring")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial gets its cpu resource)")
    ap.add_argument("--profile", action="store_true", help="also print torch.profiler's top operators")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    page = ResultsPage.from_args(args, "sds-step", "Where an SDS step's time goes", INTRO)

    base: dict = {"prompt": "a blue cone"}
    if args.prior != "auto":
        base["prior"] = args.prior
    cfg = build_trial_config(apply_overrides(base, args.overrides), "--set")
    if args.prior == "auto":
        cfg = cfg.model_copy(update={"prior": cfg.prior.model_copy(update={"kind": PriorConfig().kind})})
    prior = load_prior(cfg.prior, cfg.device)
    off_cfg = build_trial_config(apply_overrides(cfg.model_dump(), speed_off()), "--set")
    off, on = measure([off_cfg, cfg], prior, args.steps, args.warmup)
    jac_cfg = cfg.model_copy(update={"sds": cfg.sds.model_copy(update={"jacobian": True})})
    (jacobian,) = measure([jac_cfg], prior, max(args.steps // 4, 3), args.warmup)

    page.prior(cfg.prior.kind, prior.fingerprint())
    page.condition("torch threads", torch.get_num_threads())
    page.print(f"prior: {prior.describe()}")
    page.print(
        f"nerf {cfg.nerf.size}, {cfg.render.resolution}px, {cfg.render.views_per_step} views/step, "
        f"{cfg.render.samples_per_ray} samples/ray, {torch.get_num_threads()} thread(s), "
        f"mean of {args.steps} steps of each arm in turn after {args.warmup}; load average {os.getloadavg()[0]:.2f}"
    )
    for name, arm in (("every speed switch off", off), ("the defaults", on)):
        page.print("", f"{name}: {', '.join(f'{k}={v}' for k, v in arm.cfg.speed.model_dump().items())}")
        page.print(*table(arm))
    page.print("", *switch_table(off, on))
    page.print(f"{'Jacobian step':24s} {jacobian.ms('step'):8.1f} {jacobian.ms('step', False):8.1f}")
    if args.profile:
        page.print(profile_table(cfg, prior, args.steps))
    page.print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        + (f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if torch.cuda.is_available() else "")
    )
    page.print(
        f"step_over_floor={on.ms('step') / on.floor():.3f} "
        f"jacobian_over_sds={jacobian.ms('step') / on.ms('step'):.3f} "
        f"step_speedup={off.ms('step') / on.ms('step'):.2f} step_ms={on.ms('step'):.1f} "
        f"step_ms_off={off.ms('step'):.1f} render_speedup={off.render() / on.render():.2f}"
    )
    page.write()


if __name__ == "__main__":
    main()
