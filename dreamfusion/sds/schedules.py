"""Timestep sampling schedules for SDS: the axis `sweeps/timesteps.yaml` compares. One registered class each.

Every schedule maps (step, total steps, RNG) to an integer diffusion timestep in [t_min·T, t_max·T]. Two
conventions hold everywhere, as in threestudio and in DreamTime's reference implementation:
- step i of N is at progress i/N (0 at the first step, (N − 1)/N at the last);
- a fraction f of T is the integer timestep int(f·T), both ends included: U(0.02, 0.98) of T = 1000 draws from
  [20, 980], like threestudio's `randint(int(0.02·T), int(0.98·T) + 1)`.
Schedules are stateless between calls (all randomness comes from the trial's generator or from (seed, step)), so
a trial resumed from a checkpoint draws the same timesteps as one that never stopped.
"""

from __future__ import annotations

import abc
import math

import torch
from pydantic import Field, model_validator
from torch import Tensor

from dreamfusion import registry
from dreamfusion.config.schema import TimestepConfig


def timestep_index(frac: float, num_train_timesteps: int) -> int:
    """int(frac·T), capped at T − 1 so that t_max = 1 still indexes the prior's ᾱ table. A hair of slack keeps a
    fraction that float arithmetic left just under a step (0.9 − 0.8·0.8 = 0.25999…) on that step."""
    return min(int(frac * num_train_timesteps + 1e-9), num_train_timesteps - 1)


def progress(step: int, total: int) -> float:
    """i/N: 0 at the first step; the last step is at (N − 1)/N (threestudio's global_step / max_steps)."""
    return step / total


class Schedule(registry.Component, abc.ABC):
    """The diffusion timestep of optimisation step `step` (0-based) of `total`, for one trial."""

    kind = "schedule"

    def __init__(self, cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> None:
        """alphas_cumprod [T]: the prior's ᾱ_t, whose length is its number of training timesteps T."""
        self.cfg, self.total, self.seed = cfg, total, seed
        self.options = cfg.options_for(type(self))
        self.T = int(alphas_cumprod.shape[0])
        self.lo = timestep_index(cfg.t_min, self.T)
        self.hi = timestep_index(cfg.t_max, self.T)

    @abc.abstractmethod
    def __call__(self, step: int, generator: torch.Generator) -> int:
        """The integer timestep of step `step`."""


def make_schedule(cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> Schedule:
    return registry.find("schedule", cfg.schedule)(cfg, total, alphas_cumprod, seed)


@registry.register
class Uniform(Schedule):
    name = "uniform"
    version = "2"  # 2: int(f·T) with both ends included ([20, 980], was round(f·(T − 1)): [20, 979])
    summary = "t ~ U(t_min, t_max) (DreamFusion: 0.02–0.98)"

    def __call__(self, step: int, generator: torch.Generator) -> int:
        return int(torch.randint(self.lo, self.hi + 1, (), generator=generator))


class AnnealOptions(registry.Options):
    anneal_to: float = Field(0.5, ge=0, le=1)
    """t_max decays linearly to this value."""
    anneal_start: float = Field(0.0, ge=0, le=1)
    """Fraction of the run at which the decay starts."""
    anneal_end: float = Field(0.5, ge=0, le=1)
    """Fraction of the run at which t_max reaches `anneal_to`."""

    @model_validator(mode="after")
    def _ordered(self) -> AnnealOptions:
        if self.anneal_start > self.anneal_end:
            raise ValueError("anneal_start must be <= anneal_end")
        return self


def anneal_t_max(cfg: TimestepConfig, options: AnnealOptions, step: int, total: int) -> float:
    """Linear decay of t_max to `anneal_to` between the `anneal_start` and `anneal_end` fractions of the run."""
    p = progress(step, total)
    if p <= options.anneal_start:
        return cfg.t_max
    span = max(options.anneal_end - options.anneal_start, 1e-12)
    frac = min((p - options.anneal_start) / span, 1.0)
    end = max(options.anneal_to, cfg.t_min)
    return cfg.t_max + (end - cfg.t_max) * frac


@registry.register
class Anneal(Schedule):
    name = "anneal"
    version = "2"  # 2: progress i/N (was i/(N − 1)) and int(f·T)
    summary = "t ~ U(t_min, t_max(i)), t_max decaying linearly to `anneal_to` (threestudio-style)"
    Options = AnnealOptions

    def __call__(self, step: int, generator: torch.Generator) -> int:
        hi_now = max(timestep_index(anneal_t_max(self.cfg, self.options, step, self.total), self.T), self.lo)
        return int(torch.randint(self.lo, hi_now + 1, (), generator=generator))


@registry.register
class SqrtAnneal(Schedule):
    name = "sqrt_anneal"
    version = "2"  # 2: progress i/N (was i/(N − 1)) and int(f·T)
    summary = "t = t_max − (t_max − t_min)·sqrt(i/N), deterministic (HiFA)"

    def __call__(self, step: int, generator: torch.Generator) -> int:
        cfg = self.cfg
        frac = cfg.t_max - (cfg.t_max - cfg.t_min) * math.sqrt(progress(step, self.total))
        return timestep_index(frac, self.T)


# -- DreamTime (Huang et al. 2023, "DreamTime: An Improved Optimization Strategy for Diffusion-Guided 3D Generation")


class DreamTimeOptions(registry.Options):
    dreamtime_m1: float = Field(800, ge=0)
    """Upper end of the plateau of the prior weight, in steps of T=1000."""
    dreamtime_m2: float = Field(500, ge=0)
    """Lower end of the plateau."""
    dreamtime_s1: float = Field(300, gt=0)
    """Width of the Gaussian tail above m1."""
    dreamtime_s2: float = Field(100, gt=0)
    """Width of the Gaussian tail below m2."""

    @model_validator(mode="after")
    def _ordered(self) -> DreamTimeOptions:
        if self.dreamtime_m2 > self.dreamtime_m1:
            raise ValueError("dreamtime_m2 must be <= dreamtime_m1")
        return self


def plateau_weight(cfg: DreamTimeOptions, num_train_timesteps: int) -> Tensor:
    """[T] float64 W_p(t): 1 on the plateau [m2, m1], exp(−(t − m1)²/2s1²) above it, exp(−(t − m2)²/2s2²) below.

    m1, m2, s1, s2 are in steps of a T = 1000 schedule and rescaled to the prior's T.
    """
    scale = num_train_timesteps / 1000.0
    t = torch.arange(num_train_timesteps, dtype=torch.float64)
    m1, m2 = cfg.dreamtime_m1 * scale, cfg.dreamtime_m2 * scale
    s1, s2 = cfg.dreamtime_s1 * scale, cfg.dreamtime_s2 * scale
    w = torch.ones_like(t)
    w = torch.where(t > m1, torch.exp(-((t - m1) ** 2) / (2 * s1**2)), w)
    return torch.where(t < m2, torch.exp(-((t - m2) ** 2) / (2 * s2**2)), w)


def denoiser_weight(alphas_cumprod: Tensor) -> Tensor:
    """[T] float64 W_d(t) = sqrt((1 − ᾱ_t)/ᾱ_t) = σ_t/α_t, from the prior's own noise schedule: the weight the
    diffusion training loss puts on t once written in x0 (the paper's eq. 5); it rises steeply towards t = T."""
    ab = alphas_cumprod.detach().double().cpu().clamp_min(1e-12)  # ᾱ_T = 0 (zero terminal SNR) stays finite
    return ((1 - ab) / ab).sqrt()


def time_prior(weight: Tensor, lo: int, hi: int) -> Tensor:
    """[T] the weight restricted to [lo, hi] and normalised to sum to 1: the prior p(t) DreamTime walks down."""
    p = torch.zeros_like(weight)
    p[lo : hi + 1] = weight[lo : hi + 1] / weight[lo : hi + 1].sum()
    return p


def tail_mass(p: Tensor) -> Tensor:
    """[T] Σ_{τ ≥ t} p(τ): 1 at t = 0, non-increasing."""
    return torch.flip(torch.cumsum(torch.flip(p, [0]), 0), [0])


class TimePrioritized(Schedule):
    """DreamTime's time-prioritised schedule for some prior weight W(t): deterministic and non-increasing, step i
    takes the largest t whose tail mass Σ_{τ ≥ t} p(τ) still reaches i/N, so the run spends steps at each t in
    proportion to p(t). The same walk as the first author's implementation (DreamWaltz-G): t_max − bisect_left(the
    cumulative sum of p from t_max down, i/N)."""

    Options = DreamTimeOptions

    def __init__(self, cfg: TimestepConfig, total: int, alphas_cumprod: Tensor, seed: int) -> None:
        super().__init__(cfg, total, alphas_cumprod, seed)
        p = time_prior(self.weight(alphas_cumprod), self.lo, self.hi)
        self.cumulative = torch.cumsum(torch.flip(p[self.lo : self.hi + 1], [0]), 0)  # [hi − lo + 1], from t_max down

    @abc.abstractmethod
    def weight(self, alphas_cumprod: Tensor) -> Tensor:
        """[T] float64 unnormalised prior weight W(t)."""

    def __call__(self, step: int, generator: torch.Generator) -> int:
        target = torch.tensor([progress(step, self.total)], dtype=torch.float64)
        below = int(torch.searchsorted(self.cumulative, target, side="left"))  # bisect_left
        return max(self.hi - below, self.lo)


@registry.register
class DreamTime(TimePrioritized):
    name = "dreamtime"
    version = "2"  # 2: W_d·W_p as published (was W_p alone, now `dreamtime_plateau`), progress i/N and int(f·T)
    summary = (
        "deterministic, non-increasing: walks down DreamTime's prior weight W_d·W_p, W_d = sqrt((1 − ᾱ)/ᾱ) "
        "from the prior's noise schedule, W_p a plateau with Gaussian tails (Huang et al. 2023)"
    )

    def weight(self, alphas_cumprod: Tensor) -> Tensor:
        return denoiser_weight(alphas_cumprod) * plateau_weight(self.options, self.T)


@registry.register
class DreamTimePlateau(TimePrioritized):
    name = "dreamtime_plateau"
    summary = (
        "DreamTime's walk with the plateau weight W_p alone, without W_d (the first author's 'dreamtime-uniform'; "
        "`dreamtime@1` before the fix): t runs lower than in `dreamtime`"
    )

    def weight(self, alphas_cumprod: Tensor) -> Tensor:
        return plateau_weight(self.options, self.T)


def stratum_order(seed: int, cycle: int, strata: int) -> list[int]:
    """Random order of the strata in one cycle, a pure function of (seed, cycle) so resume replays it exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + cycle)
    return torch.randperm(strata, generator=g).tolist()


@registry.register
class Stratified(Schedule):
    name = "stratified"
    version = "2"  # 2: int(f·T) with both ends included
    summary = "`strata` equal strata of [t_min, t_max], each visited once per cycle in a random order"

    class Options(registry.Options):
        strata: int = Field(8, ge=1, le=1000)
        """Number of equal strata of [t_min, t_max], each visited once per cycle."""

    def __call__(self, step: int, generator: torch.Generator) -> int:
        """One uniform draw inside one stratum; each cycle of `strata` steps visits every stratum once."""
        k = self.options.strata
        stratum = stratum_order(self.seed, step // k, k)[step % k]
        width = (self.hi + 1 - self.lo) / k
        a = self.lo + stratum * width
        u = float(torch.rand((), generator=generator))
        return min(int(math.floor(a + u * width)), self.hi)
