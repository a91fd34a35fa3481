"""Timestep-schedule references written out independently of `dreamfusion.sds.schedules`, in float64 numpy:
Stable Diffusion's noise schedule and DreamTime's walk as its paper and the first author's code define it."""

from __future__ import annotations

import bisect

import numpy as np

T = 1000


def sd_alphas_cumprod() -> np.ndarray:
    """ᾱ_t of Stable Diffusion's scaled-linear schedule: β linear in sqrt(β) from 0.00085 to 0.012, T = 1000."""
    return np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, T) ** 2)


def linear_alphas_cumprod() -> np.ndarray:
    """ᾱ_t of the toy world's (and DDPM's) linear-β schedule: β from 1e-4 to 0.02, T = 1000."""
    return np.cumprod(1 - np.linspace(1e-4, 0.02, T))


def plateau(m1=800.0, m2=500.0, s1=300.0, s2=100.0) -> np.ndarray:
    """W_p: 1 on [m2, m1], Gaussian tails of widths s1 above and s2 below."""
    t = np.arange(T, dtype=np.float64)
    upper, lower = np.exp(-((t - m1) ** 2) / (2 * s1**2)), np.exp(-((t - m2) ** 2) / (2 * s2**2))
    return np.where(t > m1, upper, np.where(t < m2, lower, 1.0))


def dreamtime_weight(alphas_cumprod: np.ndarray) -> np.ndarray:
    """W_d·W_p with W_d = sqrt((1 − ᾱ)/ᾱ)."""
    return plateau() * np.sqrt((1 - alphas_cumprod) / alphas_cumprod)


def time_prioritized(weight: np.ndarray, lo: int, hi: int, steps: int) -> list[int]:
    """DreamTime's walk: normalise the weight on [lo, hi], accumulate it from hi down, and step i takes
    hi − bisect_left(cumulative, i/N), floored at lo."""
    w = weight[lo : hi + 1] / weight[lo : hi + 1].sum()
    cumulative = list(np.cumsum(w[::-1]))
    return [max(hi - bisect.bisect_left(cumulative, i / steps), lo) for i in range(steps)]
