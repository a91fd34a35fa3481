"""`df-sweep schedules`: every registered timestep schedule's t at every step of a run, for a prior's own noise
schedule (read without its weights), as a picture and as CSV rows `schedule,step,t`. DreamTime depends on ᾱ_t and
every schedule on T, so a researcher can see what a sweep axis will do before spending GPU-hours on it.

The stochastic schedules draw from a generator seeded with the seed alone; a trial interleaves those draws with
its cameras and noise, so its t's are other draws from the same distribution (the deterministic ones are equal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dreamfusion import registry
from dreamfusion.config.files import load_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.outdir import writable_dir
from dreamfusion.priors.base import Prior
from dreamfusion.sds.schedules import Schedule

#: Progress points of the summary table.
SUMMARY_AT = (0.0, 0.25, 0.5, 0.75)


@dataclass
class SchedulePreview:
    prior: str  # which prior's noise schedule, in words
    T: int  # its number of training timesteps
    steps: int
    seed: int
    timesteps: dict[str, list[int]]  # "name@version" → t at steps 0 … steps − 1
    png: Path | None = None

    def csv_lines(self) -> list[str]:
        """`schedule,step,t` rows (the schedule's registered name), after a header line."""
        rows = ["schedule,step,t"]
        for label, ts in self.timesteps.items():
            name = label.partition("@")[0]
            rows += [f"{name},{i},{t}" for i, t in enumerate(ts)]
        return rows

    def summary_lines(self) -> list[str]:
        """t of each schedule at 0, 25, 50 and 75% of the run and at its last step."""
        at = [int(p * self.steps) for p in SUMMARY_AT] + [self.steps - 1]
        width = max(len(label) for label in self.timesteps)
        head = "".join(f"{f'step {i}':>12}" for i in at)
        lines = [f"{self.prior}, T={self.T}, {self.steps} steps, seed {self.seed}", f"{'schedule':{width}}{head}"]
        lines += [f"{label:{width}}" + "".join(f"{ts[i]:>12}" for i in at) for label, ts in self.timesteps.items()]
        return lines + ([f"plot: {self.png}"] if self.png else [])


def preview_schedules(
    overrides: list[str], prior: str | None, steps: int | None, seed: int | None, out: Path
) -> SchedulePreview:
    """The trial config from `--set` overrides (`--prior` picks the prior, by name or checkpoint), every schedule
    run over it, and the plot written to `out/schedules.png`."""
    named = {k: v for k, v in (("prior", prior), ("steps", steps), ("seed", seed)) if v is not None}
    given = [f"prior={prior}"] if prior else []
    given += [*overrides, *(f"{k}={v}" for k, v in named.items() if k != "prior")]
    cfg = load_trial_config(None, given, {k: f"--{k}" for k in named})
    result = run_schedules(cfg)
    result.png = plot(result, writable_dir(Path(out)) / "schedules.png")
    return result


def run_schedules(cfg: TrialConfig) -> SchedulePreview:
    prior_cls: type[Prior] = registry.find("prior", cfg.prior.kind)
    alphas = prior_cls.noise_schedule(cfg.prior)  # [T]
    timesteps = {}
    for cls in registry.components("schedule"):
        schedule: Schedule = cls(
            cfg.sds.timesteps.model_copy(update={"schedule": cls.name}), cfg.steps, alphas, cfg.seed
        )
        g = torch.Generator().manual_seed(cfg.seed)
        timesteps[cls.label()] = [schedule(i, g) for i in range(cfg.steps)]
    label = cfg.prior.kind + (f" ({cfg.prior.model})" if cfg.prior.model else "")
    return SchedulePreview(label, int(alphas.shape[0]), cfg.steps, cfg.seed, timesteps)


def plot(preview: SchedulePreview, path: Path) -> Path:
    """One panel per schedule, t against step on shared axes, points small enough that a random schedule shows as
    the band it fills and a deterministic one as its curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(preview.timesteps)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), sharex=True, sharey=True, squeeze=False)
    steps = range(preview.steps)
    for ax, (label, ts) in zip(axes.flat, preview.timesteps.items()):
        ax.scatter(steps, ts, s=min(4.0, 4000 / preview.steps), linewidths=0, color="tab:blue")
        ax.set_title(label, fontsize=10)
        ax.set_ylim(0, preview.T)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("optimisation step")
    for ax in axes[:, 0]:
        ax.set_ylabel("diffusion timestep t")
    fig.suptitle(f"timestep schedules on {preview.prior} (T = {preview.T}), {preview.steps} steps, seed {preview.seed}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
