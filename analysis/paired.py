"""Paired comparisons: for each compared axis (and `sweep`, across sweeps), every pair of its levels, paired over
everything else that was varied (prompt × seed × …), tested with a sign-flip permutation test, Holm-adjusted
within the axis and metric, with the confidence interval that inverts the same test at the level Holm tests it.

Conventions (the columns of comparisons.csv):
- `delta` = mean over pairs of metric(level_a) − metric(level_b), in the metric's own units, whichever direction
  is better: `a>b` says level_a's value is higher. For `gt_colour_error`, where lower is better, `a>b` therefore
  means level_a is *worse*; `direction` says which way is better where it is recorded (`Sweep.direction`), else
  blank.
- `ci_low, ci_high`: the interval of the mean difference at level 1 − 0.05/(m − rank + 1) (m pairs of levels in
  the family, rank of this p among them): the level Holm tests this comparison at, so the interval excludes 0
  whenever `p_adj` < 0.05. It may be infinite: with n pairs no p-value falls below 2/2^n.
- `verdict`: `a>b` exactly when p_adj < 0.05 and ci_low > 0, `a<b` mirrored, else `same`.
- `seeds_needed`: seeds (at the sweep's other axes) that would give 80% power at the observed d_z, at level
  0.05/m, where Holm rejects whatever its rank; blank when the observed difference is exactly 0.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pandas as pd

from analysis import stats
from analysis.compare import axes_to_compare, levels
from analysis.load import Sweep, varied_frame

#: Exact scores of the toy world's ground truth, compared beside the sweep's own metric wherever trials log them.
GROUND_TRUTH = ("gt_iou", "gt_colour_error")
COLUMNS = [
    "axis",
    "level_a",
    "level_b",
    "metric",
    "delta",
    "ci_low",
    "ci_high",
    "p_adj",
    "verdict",
    "seeds_needed",
    "effect_size",
    "n",
    "p",
    "direction",
]
TREND_COLUMNS = ["axis", "metric", "scale", "slope", "ci_low", "ci_high", "p_adj", "verdict", "n", "p"]


def compared_metrics(sweep: Sweep) -> dict[str, str | None]:
    """Metric → better direction (`Sweep.direction`): each source's `tune.metric`, then the ground-truth scores."""
    ranked = [s.tune.get("metric", sweep.metric) for s in sweep.sources] or [sweep.metric]
    t = sweep.finished
    return {m: sweep.direction(m) for m in dict.fromkeys([*ranked, *GROUND_TRUTH]) if m in t and t[m].notna().any()}


def blocks(sweep: Sweep, axis: str) -> list[str]:
    """What a pair is matched on: every other discrete varied key (and the sweep, when several are compared)."""
    keys = [k for k in sweep.varied if k != axis and k not in sweep.continuous]
    return keys + (["sweep"] if axis != "sweep" and len(sweep.sources) > 1 else [])


def paired_frame(frame: pd.DataFrame, axis: str, metric: str, by: list[str]) -> pd.DataFrame:
    """Blocks × levels of the metric's mean (repeats of one config average into one value)."""
    data = frame[[axis, *by, metric]].dropna()
    if data.empty:
        return pd.DataFrame()
    if not by:
        return data.groupby(axis)[metric].mean().to_frame().T
    return data.groupby([*by, axis])[metric].mean().unstack(axis)


def differences(wide: pd.DataFrame, a: object, b: object) -> pd.Series:
    """metric(a) − metric(b) over the blocks that hold both."""
    if a not in wide or b not in wide:
        return pd.Series(dtype=float)
    return (wide[a] - wide[b]).dropna()


def _seeds(diffs: pd.Series, by: list[str]) -> int:
    """How many seeds the pairs span (1 when the seed is not varied: each further seed repeats every block)."""
    return int(diffs.index.get_level_values("seed").nunique()) if "seed" in by and len(diffs) else 1


def family(frame: pd.DataFrame, axis: str, order: list, metric: str, by: list[str], seed: int = 0) -> list[dict]:
    """Every pair of levels of one axis on one metric, Holm-adjusted together."""
    wide = paired_frame(frame, axis, metric, by)
    pairs = [(a, b, differences(wide, a, b)) for a, b in combinations(order, 2)] if not wide.empty else []
    pairs = [(a, b, d) for a, b, d in pairs if len(d)]
    if not pairs:
        return []
    tests = [stats.paired(d.to_numpy(), seed) for _, _, d in pairs]
    adjusted, alphas = stats.holm([t.p for t in tests])
    rows = []
    for (a, b, d), test, p_adj, alpha in zip(pairs, tests, adjusted, alphas):
        low, high = stats.permutation_ci(d.to_numpy(), float(alpha), seed)
        needed = stats.pairs_needed(test.effect_size, stats.ALPHA / len(pairs))
        per_seed = test.n / _seeds(d, by)
        rows.append(
            {
                "axis": axis,
                "level_a": a,
                "level_b": b,
                "metric": metric,
                "delta": test.delta,
                "ci_low": low,
                "ci_high": high,
                "p_adj": float(p_adj),
                "verdict": stats.verdict(float(p_adj), low, high),
                "seeds_needed": math.ceil(needed / per_seed) if not math.isnan(needed) else pd.NA,
                "effect_size": test.effect_size,
                "n": test.n,
                "p": test.p,
            }
        )
    return rows


def comparisons(sweep: Sweep, seed: int = 0) -> pd.DataFrame:
    """comparisons.csv: every compared axis (and `sweep`) × every compared metric."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    axes = [a for a in axes_to_compare(sweep) if a not in sweep.continuous]
    axes += ["sweep"] if len(sweep.sources) > 1 else []
    rows = []
    for metric, direction in compared_metrics(sweep).items():
        for axis in axes:
            found = family(frame, axis, levels(sweep, axis), metric, blocks(sweep, axis), seed)
            rows += [{**row, "direction": direction} for row in found]
    table = pd.DataFrame(rows, columns=COLUMNS)
    table["seeds_needed"] = table["seeds_needed"].astype("Int64")
    table["n"] = table["n"].astype("Int64")
    return table


def _scale(values: pd.Series) -> str:
    """log10 for ladders (all positive, spanning 20× or more: guidance 1…100), else linear."""
    return "log10" if values.min() > 0 and values.max() / values.min() >= 20 else "linear"


def block_slopes(frame: pd.DataFrame, axis: str, metric: str, by: list[str], scale: str) -> np.ndarray:
    """Per block: the least-squares slope of the metric against the axis (or its log10) over the levels it has."""
    wide = paired_frame(frame, axis, metric, by)
    slopes = []
    for _, row in wide.iterrows():
        row = row.dropna()
        if len(row) >= 2:
            x = np.log10(row.index.to_numpy(dtype=float)) if scale == "log10" else row.index.to_numpy(dtype=float)
            slopes.append(np.polyfit(x, row.to_numpy(dtype=float), 1)[0])
    return np.asarray(slopes)


def trends(sweep: Sweep, seed: int = 0) -> pd.DataFrame:
    """trends.csv: for each numeric axis with three or more levels, does the metric rise or fall along it? The
    mean per-block slope, sign-flip tested and Holm-adjusted over all (axis, metric) rows, CI as in comparisons."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    found: list[tuple[dict[str, object], np.ndarray]] = []
    for metric in compared_metrics(sweep):
        for axis in axes_to_compare(sweep):
            values = pd.to_numeric(frame[axis], errors="coerce") if axis in frame else pd.Series(dtype=float)
            if values.isna().any() or values.nunique() < 3 or pd.api.types.is_bool_dtype(frame[axis]):
                continue
            scale = _scale(values)
            slopes = block_slopes(frame.assign(**{axis: values}), axis, metric, blocks(sweep, axis), scale)
            if len(slopes):
                found.append(({"axis": axis, "metric": metric, "scale": scale}, slopes))
    tests = [stats.paired(slopes, seed) for _, slopes in found]
    adjusted, alphas = stats.holm([t.p for t in tests])
    rows = []
    for (key, slopes), test, p_adj, alpha in zip(found, tests, adjusted, alphas):
        low, high = stats.permutation_ci(slopes, float(alpha), seed)
        word = {"a>b": "rises", "a<b": "falls", "same": "flat"}[stats.verdict(float(p_adj), low, high)]
        rows.append(
            {
                **key,
                "slope": test.delta,
                "ci_low": low,
                "ci_high": high,
                "p_adj": float(p_adj),
                "verdict": word,
                "n": test.n,
                "p": test.p,
            }
        )
    return pd.DataFrame(rows, columns=TREND_COLUMNS)
