"""The statistics behind a verdict: a paired sign-flip permutation test of a mean difference, the confidence
interval that inverts exactly that test, Holm's step-down adjustment, how many seeds 80% power would take, and the
smallest difference a design detects with 80% power.

Why a sign-flip test: under "no difference" each paired difference d_i is as likely to be +d_i as −d_i, so the
2^n sign patterns give the exact null distribution of the mean without assuming normality; with 6 to 30 pairs and
metrics bounded in [0, 1] that matters. Its confidence interval is the set of shifts δ the same test does not
reject (Hartigan 1969), computed here in closed form, so "p ≤ α" and "0 outside the 1 − α interval" never disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8
#: Up to this many pairs every sign pattern is enumerated (2^16 rows); beyond it, a seeded random sample of them.
MAX_EXACT_PAIRS = 16
RANDOM_FLIPS = 20_000


@lru_cache(maxsize=64)
def sign_flips(n: int, seed: int = 0) -> np.ndarray:
    """[B, n] rows of ±1: all 2^n patterns when n ≤ MAX_EXACT_PAIRS, else the identity plus RANDOM_FLIPS seeded
    draws (with the identity included, count/B is a valid p-value: Phipson & Smyth 2010)."""
    if n <= MAX_EXACT_PAIRS:
        bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1  # [2^n, n]
        flips = 1.0 - 2.0 * bits
    else:
        rng = np.random.default_rng(seed)
        draws = np.where(rng.random((RANDOM_FLIPS, n)) < 0.5, -1.0, 1.0)
        flips = np.vstack([np.ones((1, n)), draws])
    flips.setflags(write=False)
    return flips


def permutation_p(d: np.ndarray, seed: int = 0) -> float:
    """Two-sided p-value of H0: mean(d) = 0: the share of sign patterns whose |sum| reaches the observed one."""
    d = np.asarray(d, dtype=float)
    flips = sign_flips(len(d), seed)
    observed = abs(d.sum())
    tolerance = 1e-12 * max(float(np.abs(d).sum()), 1e-300)  # ties that differ only by summation order
    return float(np.mean(np.abs(flips @ d) >= observed - tolerance))


def _largest_positive_root(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    """Per sign pattern j: the largest u > 0 with |a_j + u·b_j| = n·u (inf where |b_j| = n: those patterns reach
    the observed |sum| at every shift; 0 where no root exists: they never do)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        roots = np.stack([a / (n - b), -a / (n + b)])  # [2, B]
    roots = np.where(np.isfinite(roots) & (roots > 0), roots, 0.0).max(axis=0)
    return np.where(np.abs(b) >= n, np.inf, roots)


def permutation_ci(d: np.ndarray, alpha: float = ALPHA, seed: int = 0) -> tuple[float, float]:
    """The shifts δ whose sign-flip test of mean(d − δ) = 0 gives p > alpha: an interval [low, high].

    With e = d − mean(d) and u the distance of δ from the mean, pattern j reaches the observed statistic exactly
    when |A_j ± u·b_j| ≥ n·u (A_j = s_j·e, b_j = Σ s_j, the sign by the side), which holds for u up to the largest
    root of the equality (the left side is convex in 1/u and below n at 1/u = 0). So p(δ) falls monotonically away
    from the mean, and each end of the interval is the k-th largest root, k = ⌊alpha·B⌋ + 1."""
    d = np.asarray(d, dtype=float)
    n, mean = len(d), float(d.mean())
    flips = sign_flips(n, seed)
    a, b = flips @ (d - mean), flips.sum(axis=1)  # [B], [B]
    k = math.floor(alpha * len(flips)) + 1
    below = np.sort(_largest_positive_root(a, b, n))[::-1][k - 1]
    above = np.sort(_largest_positive_root(a, -b, n))[::-1][k - 1]
    return mean - float(below), mean + float(above)


def holm(p: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Holm's step-down adjusted p-values, and the level each hypothesis is tested at (alpha / (m − rank + 1)),
    both in the input order. Adjusted: p_adj(k) = max over j ≤ k of min(1, (m − j + 1)·p(j)), sorted ascending."""
    p = np.asarray(p, dtype=float)
    m = len(p)
    order = np.argsort(p, kind="stable")
    factors = m - np.arange(m)  # m, m − 1, …, 1 for ranks 1..m
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(factors * p[order]))
    levels = np.empty(m)
    levels[order] = ALPHA / factors
    return adjusted, levels


def effect_size(d: np.ndarray) -> float:
    """Cohen's d_z: the mean difference in units of the differences' own standard deviation."""
    d = np.asarray(d, dtype=float)
    if len(d) < 2:
        return math.nan
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    if sd == 0:
        return math.nan if mean == 0 else math.copysign(math.inf, mean)
    return mean / sd


def paired_power(n: int, dz: float, alpha: float) -> float:
    """Power of the two-sided paired t-test with n pairs at standardised effect dz (the sign-flip test's large-n
    twin): P(|T| > t_crit) with T noncentral t, df n − 1, noncentrality dz·√n."""
    crit = stats.t.ppf(1 - alpha / 2, n - 1)
    nc = abs(dz) * math.sqrt(n)
    return float(stats.nct.sf(crit, n - 1, nc) + stats.nct.cdf(-crit, n - 1, nc))


def pairs_needed(dz: float, alpha: float, power: float = POWER) -> float:
    """The fewest pairs that give `power` at effect dz and level alpha, and that the sign-flip test can reject
    at all (its smallest p-value is 2/2^n); NaN when there is no effect to detect."""
    if math.isnan(dz) or dz == 0:
        return math.nan
    floor = max(2, math.floor(math.log2(2 / alpha)) + 1)  # smallest n with 2/2^n < alpha
    if math.isinf(dz):
        return float(floor)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    n = max(floor, math.ceil((z / dz) ** 2))
    while paired_power(n, dz, alpha) < power:
        n += 1
    return float(n)


def detectable(n: int, sd: float, alpha: float, power: float = POWER) -> float:
    """The smallest mean difference that n pairs, whose differences spread with standard deviation sd, detect with
    `power` at level alpha: what a null result rules out. The paired t-test's minimum detectable effect,
    (t_{1−alpha/2} + t_{power}) · sd / √n with n − 1 degrees of freedom (the large-n twin of the sign-flip test, as
    in `pairs_needed`). inf when n pairs cannot reach alpha at all (the sign-flip test's smallest p is 2/2^n); NaN
    when sd is unknown (n < 2)."""
    if n < 2 or math.isnan(sd):
        return math.nan
    if 2 / 2**n >= alpha:
        return math.inf
    return float((stats.t.ppf(1 - alpha / 2, n - 1) + stats.t.ppf(power, n - 1)) * sd / math.sqrt(n))


@dataclass(frozen=True)
class Paired:
    """One paired comparison before adjustment: n pairs, the mean difference, its raw p, and d_z."""

    n: int
    delta: float
    p: float
    effect_size: float


def paired(d: np.ndarray, seed: int = 0) -> Paired:
    d = np.asarray(d, dtype=float)
    return Paired(len(d), float(d.mean()), permutation_p(d, seed), effect_size(d))


def verdict(p_adj: float, ci_low: float, ci_high: float) -> str:
    """`a>b` exactly when p_adj < 0.05 and the interval lies above 0; `a<b` mirrored; else `same`."""
    if p_adj < ALPHA and ci_low > 0:
        return "a>b"
    if p_adj < ALPHA and ci_high < 0:
        return "a<b"
    return "same"
