"""The seed's claim, measured: subtracting the injected noise ε (SDS's "baseline") keeps the gradient's
expectation and lowers its variance.

    python benchmarks/sds_variance.py [--draws 4096] [--warmup 50] [--batch 256] [--seed 0] [--set key=value ...]

Setup: the toy-world prior at the default trial settings (guidance 20, diffusers convention, w(t) = 1 − ᾱ_t); a
fixed render, the front view of a default trial's field after `--warmup` steps; a seeded set of `--draws` paired
draws (t, ε), t uniform on [int(0.02·T), int(0.98·T)] and ε ~ N(0, I). Each draw gives both gradients from the
same (t, ε) through the registered `sds` loss: w(t)(ε̂ − ε) with the baseline, w(t)·ε̂ without.

Variance: the per-element variance across draws, averaged over elements; ratio = without / with. Means: per draw,
the element-averaged difference between the two gradients (−w(t)·mean(ε), zero in expectation); its mean and 95%
CI over draws must contain 0. Both overall and per band of t. The last line is
    variance_ratio=<var off / var on> mean_within_ci=<0|1> draws=<n>
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
from dataclasses import dataclass, field

import torch
from results_page import ResultsPage, add_arguments

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.config.schema import TimestepConfig, TrialConfig
from dreamfusion.nerf.cameras import ring_cameras
from dreamfusion.nerf.render import Lighting
from dreamfusion.priors.base import Prior, load_prior
from dreamfusion.sds.loss import make_loss
from dreamfusion.sds.schedules import make_schedule
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import SDSStep

INTRO = """
Does subtracting the injected noise ε (SDS's baseline) keep the gradient's expectation and lower its variance? The
default trial's prior and settings, one fixed render (the front view of a default "a red cube" trial's field after
the warm-up steps), and seeded paired draws (t, ε), each giving both gradients from the same (t, ε) through the
registered `sds` loss: w(t)(ε̂ − ε) with the baseline, w(t)·ε̂ without. Variance is per element across draws, averaged
over elements; the mean difference −w(t)·mean(ε) is zero in expectation, so its 95% CI should contain 0.
"""

#: Upper edges of the bands of t the variance is also reported in (the last band ends at t_max).
BAND_EDGES = (200, 400, 600, 800)
Z95 = 1.959964


@dataclass
class Moments:
    """Running sums over draws: per-element sums of both gradients and their squares, and each draw's
    element-averaged difference between them."""

    shape: tuple[int, ...]
    n: int = 0
    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    diffs: list[float] = field(default_factory=list)

    def add(self, on: torch.Tensor, off: torch.Tensor) -> None:
        """on, off [k, C, h, w]: k draws' gradients with and without the baseline."""
        for name, g in (("on", on.double()), ("off", off.double())):
            self.sums[name] = self.sums.get(name, torch.zeros(self.shape, dtype=torch.float64)) + g.sum(0)
            self.sums[name + "2"] = self.sums.get(name + "2", torch.zeros(self.shape, dtype=torch.float64)) + (
                g**2
            ).sum(0)
        self.diffs += (on.double() - off.double()).flatten(1).mean(1).tolist()
        self.n += on.shape[0]

    def variance(self, name: str) -> float:
        """Unbiased per-element variance across draws, averaged over elements."""
        mean = self.sums[name] / self.n
        return float(((self.sums[name + "2"] - self.n * mean**2) / (self.n - 1)).mean())

    def mean_ci(self) -> tuple[float, float]:
        d = torch.tensor(self.diffs, dtype=torch.float64)
        return float(d.mean()), Z95 * float(d.std()) / math.sqrt(len(d))


def fixed_render(cfg: TrialConfig, prior: Prior, warmup: int) -> torch.Tensor:
    """[1, C, h, w] model-space render of a default trial's field after `warmup` steps: the front view at the eval
    ring's elevation, lit from the camera."""
    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    for _ in range(warmup):
        step(state)
    cams = ring_cameras(1, 15.0, sum(cfg.camera.distance) / 2, cfg.camera.fov).to(prior.device)
    light = Lighting("lambertian", cams.position * 1.5, cfg.render.ambient, cfg.render.diffuse)
    with torch.no_grad():
        rgb = state.render(cams, light, None, None, need_normals=False).rgb
        return prior.to_model_space(rgb)


def band_of(t: int, t_min: int, t_max: int) -> tuple[int, str]:
    """(lower edge, label) of the band of t: [t_min, 200), [200, 400), …, [800, t_max]."""
    lo = max((e for e in BAND_EDGES if e <= t), default=t_min)
    hi = min((e for e in BAND_EDGES if e > t), default=None)
    return lo, f"[{lo}, {hi})" if hi is not None else f"[{lo}, {t_max}]"


def measure(cfg: TrialConfig, prior: Prior, x: torch.Tensor, draws: int, batch: int, seed: int):
    """Both gradients for `draws` paired (t, ε) draws, in batches; moments overall and per band of t."""
    g = torch.Generator().manual_seed(seed)
    schedule = make_schedule(TimestepConfig(schedule="uniform"), 1, prior.alphas_cumprod, seed)
    with_baseline = make_loss(cfg.sds.model_copy(update={"baseline": True}))
    without = make_loss(cfg.sds.model_copy(update={"baseline": False}))
    cond, uncond = prior.text_embedding(cfg.prompt), prior.text_embedding("")
    overall, bands = Moments(tuple(x.shape[1:])), {}
    for start in range(0, draws, batch):
        k = min(batch, draws - start)
        t = torch.tensor([schedule(0, g) for _ in range(k)], device=prior.device)
        noise = torch.randn((k, *x.shape[1:]), generator=g).to(prior.device)
        xs = x.expand(k, *x.shape[1:]).clone()
        embs = (cond.expand(k, *cond.shape[1:]), uncond.expand(k, *uncond.shape[1:]))
        on = with_baseline(prior, xs, t, *embs, noise).grad.cpu()
        off = without(prior, xs, t, *embs, noise).grad.cpu()
        overall.add(on, off)
        labels = [band_of(int(v), schedule.lo, schedule.hi) for v in t]
        for label in dict.fromkeys(labels):
            rows = torch.tensor([lab == label for lab in labels])
            bands.setdefault(label, Moments(tuple(x.shape[1:]))).add(on[rows], off[rows])
        print(f"  {start + k}/{draws} draws", flush=True)
    return overall, {label: m for (_, label), m in sorted(bands.items())}


def report_line(label: str, m: Moments) -> str:
    on, off = m.variance("on"), m.variance("off")
    mean, half = m.mean_ci()
    return f"{label:>12s} {m.n:6d} {on:12.5g} {off:12.5g} {off / on:9.2f}   {mean:+.2e} ± {half:.2e}"


def table_row(label: str, m: Moments) -> list[str]:
    on, off = m.variance("on"), m.variance("off")
    mean, half = m.mean_ci()
    return [label, str(m.n), f"{on:.4f}", f"{off:.4f}", f"{off / on:.2f}", f"{mean:+.1e} ± {half:.1e}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draws", type=int, default=4096)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=50, help="steps of the default trial before the render is fixed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    page = ResultsPage.from_args(args, "sds-variance", "SDS gradient variance", INTRO)
    page.condition("torch threads", args.threads)

    cfg = build_trial_config(apply_overrides({"prompt": "a red cube", "seed": args.seed}, args.overrides), "--set")
    prior = load_prior(cfg.prior, cfg.device)
    x = fixed_render(cfg, prior, args.warmup)
    overall, bands = measure(cfg, prior, x, args.draws, args.batch, args.seed)

    s = cfg.sds
    page.prior(cfg.prior.kind, prior.fingerprint())
    page.print(f"prior: {prior.describe()}")
    page.print(
        f"prompt {cfg.prompt!r}, render after {args.warmup} default steps, guidance {s.guidance_scale:g} "
        f"({s.guidance_convention}), weighting {s.weighting}, {args.draws} paired (t, ε) draws, seed {args.seed}"
    )
    page.print(
        f"{'t band':>12s} {'draws':>6s} {'var on':>12s} {'var off':>12s} {'off/on':>9s}   mean(on − off) ± 95% CI"
    )
    for label, m in [*bands.items(), ("all", overall)]:
        page.print(report_line(label, m))
    page.table(
        ["t band", "draws", "variance with ε subtracted", "without", "ratio", "mean(with − without) ± 95% CI"],
        [table_row(label, m) for label, m in [*bands.items(), ("all", overall)]],
    )
    mean, half = overall.mean_ci()
    load = os.getloadavg()
    page.print(
        f"wall {time.perf_counter() - started:.0f} s, {torch.get_num_threads()} thread(s), peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    ratio = overall.variance("off") / overall.variance("on")
    page.print(f"variance_ratio={ratio:.3f} mean_within_ci={int(abs(mean) <= half)} draws={overall.n}")
    page.write()


if __name__ == "__main__":
    main()
