"""Timestep sampling schedules for SDS: the axis `sweeps/timesteps.yaml` compares. One registered class each.

Every schedule maps (step, total steps, RNG) to an integer diffusion timestep in [t_min·T, t_max·T]. Fractions of
T are the config's unit (DreamFusion's U(0.02, 0.98)); integers are what the prior's ᾱ table is indexed by.
Schedules are stateless between calls (all randomness comes from the trial's generator or from (seed, step)), so
a trial resumed from a checkpoint draws the same timesteps as one that never stopped.
"""

from __future__ import annotations

import abc
import math

import torch
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import TimestepConfig


def _to_index(frac: float, num_train_timesteps: int) -> int:
    return int(round(frac * (num_train_timesteps - 1)))


def _progress(step: int, total: int) -> float:
    """0 at the first step, 1 at the last."""
    return step / max(total - 1, 1)


class Schedule(registry.Component, abc.ABC):
    """The diffusion timestep of optimisation step `step` (0-based) of `total`, for one trial."""

    kind = "schedule"

    def __init__(self, cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> None:
        """alphas_cumprod [T]: the prior's ᾱ_t, whose length is its number of training timesteps T."""
        self.cfg, self.total, self.seed = cfg, total, seed
        self.T = int(alphas_cumprod.shape[0])
        self.lo = _to_index(cfg.t_min, self.T)
        self.hi = _to_index(cfg.t_max, self.T)

    @abc.abstractmethod
    def __call__(self, step: int, generator: torch.Generator) -> int:
        """The integer timestep of step `step`."""


def make_schedule(cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> Schedule:
    return registry.find("schedule", cfg.schedule)(cfg, total, alphas_cumprod, seed)


@registry.register
class Uniform(Schedule):
    name = "uniform"
    summary = "t ~ U(t_min, t_max) (DreamFusion: 0.02–0.98)"

    def __call__(self, step: int, generator: torch.Generator) -> int:
        return int(torch.randint(self.lo, self.hi + 1, (), generator=generator))


def anneal_t_max(cfg: TimestepConfig, step: int, total: int) -> float:
    """Linear decay of t_max to `anneal_to` between the `anneal_start` and `anneal_end` fractions of the run."""
    p = _progress(step, total)
    if p <= cfg.anneal_start:
        return cfg.t_max
    span = max(cfg.anneal_end - cfg.anneal_start, 1e-12)
    frac = min((p - cfg.anneal_start) / span, 1.0)
    end = max(cfg.anneal_to, cfg.t_min)
    return cfg.t_max + (end - cfg.t_max) * frac


@registry.register
class Anneal(Schedule):
    name = "anneal"
    summary = "t ~ U(t_min, t_max(i)), t_max decaying linearly to `anneal_to` (threestudio-style)"
    options = ("sds.timesteps.anneal_to", "sds.timesteps.anneal_start", "sds.timesteps.anneal_end")

    def __call__(self, step: int, generator: torch.Generator) -> int:
        hi_now = max(_to_index(anneal_t_max(self.cfg, step, self.total), self.T), self.lo)
        return int(torch.randint(self.lo, hi_now + 1, (), generator=generator))


@registry.register
class SqrtAnneal(Schedule):
    name = "sqrt_anneal"
    summary = "t = t_max − (t_max − t_min)·sqrt(i/N), deterministic (HiFA)"

    def __call__(self, step: int, generator: torch.Generator) -> int:
        cfg = self.cfg
        frac = cfg.t_max - (cfg.t_max - cfg.t_min) * math.sqrt(_progress(step, self.total))
        return _to_index(frac, self.T)


def dreamtime_weights(cfg: TimestepConfig, num_train_timesteps: int) -> Tensor:
    """[T] normalised prior weight p(t) of DreamTime (TP-SDS): plateau on [m2, m1], Gaussian tails outside.

    m1, m2, s1, s2 are in steps of a T=1000 schedule and rescaled to the prior's T.
    """
    scale = num_train_timesteps / 1000.0
    t = torch.arange(num_train_timesteps, dtype=torch.float64)
    m1, m2 = cfg.dreamtime_m1 * scale, cfg.dreamtime_m2 * scale
    s1, s2 = cfg.dreamtime_s1 * scale, cfg.dreamtime_s2 * scale
    w = torch.ones_like(t)
    w = torch.where(t > m1, torch.exp(-((t - m1) ** 2) / (2 * s1**2)), w)
    w = torch.where(t < m2, torch.exp(-((t - m2) ** 2) / (2 * s2**2)), w)
    lo, hi = _to_index(cfg.t_min, num_train_timesteps), _to_index(cfg.t_max, num_train_timesteps)
    w[:lo] = 0
    w[hi + 1 :] = 0
    return w / w.sum()


def dreamtime_tail(cfg: TimestepConfig, num_train_timesteps: int) -> Tensor:
    """[T] tail mass Σ_{τ ≥ t} p(τ) of the DreamTime weight: 1 at t = 0, non-increasing."""
    p = dreamtime_weights(cfg, num_train_timesteps)
    return torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])


@registry.register
class DreamTime(Schedule):
    name = "dreamtime"
    summary = (
        "deterministic, non-increasing: where the tail mass of DreamTime's plateau weight reaches i/N "
        "(Huang et al. 2023)"
    )
    options = (
        "sds.timesteps.dreamtime_m1",
        "sds.timesteps.dreamtime_m2",
        "sds.timesteps.dreamtime_s1",
        "sds.timesteps.dreamtime_s2",
    )

    def __init__(self, cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> None:
        super().__init__(cfg, total, alphas_cumprod, seed)
        self.tail = dreamtime_tail(cfg, self.T)  # [T]

    def __call__(self, step: int, generator: torch.Generator) -> int:
        """The largest t whose tail mass still reaches i/N: step 0 starts at the top of the support and the last
        step ends at its bottom."""
        target = _progress(step, self.total)
        hits = torch.nonzero((self.tail >= target - 1e-9) & (self.tail > 0)).flatten()
        return int(hits.max()) if len(hits) else self.lo


def stratum_order(seed: int, cycle: int, strata: int) -> list[int]:
    """Random order of the strata in one cycle, a pure function of (seed, cycle) so resume replays it exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + cycle)
    return torch.randperm(strata, generator=g).tolist()


@registry.register
class Stratified(Schedule):
    name = "stratified"
    summary = "`strata` equal strata of [t_min, t_max], each visited once per cycle in a random order"
    options = ("sds.timesteps.strata",)

    def __call__(self, step: int, generator: torch.Generator) -> int:
        """One uniform draw inside one stratum; each cycle of `strata` steps visits every stratum once."""
        k = self.cfg.strata
        stratum = stratum_order(self.seed, step // k, k)[step % k]
        width = (self.hi + 1 - self.lo) / k
        a = self.lo + stratum * width
        u = float(torch.rand((), generator=generator))
        return min(int(math.floor(a + u * width)), self.hi)
