"""Paired comparisons: for each compared axis (and `sweep`, across sweeps), every pair of its levels, paired over
everything else that was varied (prompt × seed × …), tested with a sign-flip permutation test, with the confidence
interval that inverts the same test at the level Holm tests it; and trends along numeric axes, tested alike.

The multiple-comparison family is the axis: every pair of its levels and its trend, on every metric the report
concludes on (the sweep's metric and the ground-truth scores), are Holm-adjusted together. A headline that reads
across metrics is then corrected for all of them, and a comparison and a trend on one axis never disagree about
the family they were corrected in. `family_size` is that family's m.

Conventions (the columns of comparisons.csv):
- `delta` = mean over pairs of metric(level_a) − metric(level_b), in the metric's own units, whichever direction
  is better: `a>b` says level_a's value is higher. For `gt_colour_error`, where lower is better, `a>b` therefore
  means level_a is *worse*; `direction` says which way is better where it is recorded (`Sweep.direction`), else
  blank.
- `ci_low, ci_high`: the interval of the mean difference at level 1 − 0.05/(m − rank + 1) (m hypotheses in the
  axis's family, rank of this p among them): the level Holm tests this comparison at, so the interval excludes 0
  whenever `p_adj` < 0.05. It may be infinite: with n pairs no p-value falls below 2/2^n.
- `verdict`: `a>b` exactly when p_adj < 0.05 and ci_low > 0, `a<b` mirrored, else `same`.
- `seeds_needed`: seeds (at the sweep's other axes) that would give 80% power at the observed d_z, at level
  0.05/m, where Holm rejects whatever its rank; blank when the observed difference is exactly 0.
- `detectable`: the smallest difference (a slope, for a trend) these pairs detect with 80% power at level 0.05/m,
  given the spread of their differences (`stats.detectable`): what a "no difference detected" rules out. Infinite
  when so few pairs cannot reach the level at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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
    "detectable",
    "family_size",
]
TREND_COLUMNS = [
    "axis",
    "metric",
    "scale",
    "slope",
    "ci_low",
    "ci_high",
    "p_adj",
    "verdict",
    "n",
    "p",
    "detectable",
    "family_size",
]
#: A trend's verdict in words: the slope's sign where it is significant.
TREND_WORDS = {"a>b": "rises", "a<b": "falls", "same": "flat"}


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


@dataclass
class Tested:
    """One hypothesis of an axis's family before adjustment: what it is about (`key`: a pair of levels, or a trend,
    on one metric), the paired values tested (differences, or per-block slopes), the test, and the seeds spanned."""

    key: dict[str, object]
    values: np.ndarray
    test: stats.Paired
    seeds: int = 1


def pair_tests(frame: pd.DataFrame, axis: str, order: list, metric: str, by: list[str], seed: int = 0) -> list[Tested]:
    """Every pair of levels of one axis on one metric, tested (not yet adjusted)."""
    wide = paired_frame(frame, axis, metric, by)
    pairs = [(a, b, differences(wide, a, b)) for a, b in combinations(order, 2)] if not wide.empty else []
    return [
        Tested(
            {"axis": axis, "level_a": a, "level_b": b, "metric": metric},
            d.to_numpy(),
            stats.paired(d.to_numpy(), seed),
            _seeds(d, by),
        )
        for a, b, d in pairs
        if len(d)
    ]


def adjusted(family: list[Tested], seed: int = 0) -> list[dict]:
    """One family's rows, Holm-adjusted together: p_adj, the interval at the level Holm tests each at, the verdict,
    and, at level 0.05/m (where Holm rejects whatever the rank), the seeds 80% power would take and the smallest
    difference the design detects with 80% power (`detectable`)."""
    adjusted_p, alphas = stats.holm([t.test.p for t in family])
    level = stats.ALPHA / max(len(family), 1)
    rows = []
    for t, p_adj, alpha in zip(family, adjusted_p, alphas):
        low, high = stats.permutation_ci(t.values, float(alpha), seed)
        needed = stats.pairs_needed(t.test.effect_size, level)
        spread = float(np.std(t.values, ddof=1)) if t.test.n > 1 else math.nan
        rows.append(
            {
                **t.key,
                "delta": t.test.delta,
                "ci_low": low,
                "ci_high": high,
                "p_adj": float(p_adj),
                "verdict": stats.verdict(float(p_adj), low, high),
                "seeds_needed": math.ceil(needed / (t.test.n / t.seeds)) if not math.isnan(needed) else pd.NA,
                "effect_size": t.test.effect_size,
                "n": t.test.n,
                "p": t.test.p,
                "detectable": stats.detectable(t.test.n, spread, level),
                "family_size": len(family),
            }
        )
    return rows


def tested(sweep: Sweep, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparisons.csv, trends.csv), from one Holm family per axis: every pair of its levels and its trend, on
    every metric the report concludes on (`compared_metrics`), so that a conclusion drawn across metrics is
    corrected for all of them, and a comparison and a trend on one axis agree on the family they belong to."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    metrics = compared_metrics(sweep)
    pairs: list[dict] = []
    slopes: list[dict] = []
    for axis in _axes(sweep):
        family = [t for m in metrics for t in _pair_family(sweep, frame, axis, m, seed)]
        family += [t for m in metrics for t in _trend_test(sweep, frame, axis, m, seed)]
        for row in adjusted(family, seed):
            if "level_a" in row:
                pairs.append({**row, "direction": metrics[str(row["metric"])]})
            else:
                slopes.append({**row, "slope": row["delta"], "verdict": TREND_WORDS[str(row["verdict"])]})
    table = pd.DataFrame(pairs, columns=COLUMNS)
    for column in ("seeds_needed", "n", "family_size"):
        table[column] = table[column].astype("Int64")
    return table, pd.DataFrame(slopes, columns=TREND_COLUMNS)


def comparisons(sweep: Sweep, seed: int = 0) -> pd.DataFrame:
    """comparisons.csv: every compared axis (and `sweep`) × every compared metric (`tested`)."""
    return tested(sweep, seed)[0]


def trends(sweep: Sweep, seed: int = 0) -> pd.DataFrame:
    """trends.csv: for each numeric axis with three or more levels, does the metric rise or fall along it? The
    mean per-block slope, sign-flip tested, in its axis's Holm family (`tested`), CI as in comparisons."""
    return tested(sweep, seed)[1]


def _axes(sweep: Sweep) -> list[str]:
    """The axes a report concludes on: each compared one (a continuous one for its trend only), then `sweep`."""
    return axes_to_compare(sweep) + (["sweep"] if len(sweep.sources) > 1 else [])


def _pair_family(sweep: Sweep, frame: pd.DataFrame, axis: str, metric: str, seed: int) -> list[Tested]:
    if axis in sweep.continuous:
        return []
    return pair_tests(frame, axis, levels(sweep, axis), metric, blocks(sweep, axis), seed)


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


def _trend_test(sweep: Sweep, frame: pd.DataFrame, axis: str, metric: str, seed: int) -> list[Tested]:
    """The trend of `metric` along `axis`, where the axis is numeric with three or more levels (else none)."""
    values = pd.to_numeric(frame[axis], errors="coerce") if axis in frame else pd.Series(dtype=float)
    if values.isna().any() or values.nunique() < 3 or pd.api.types.is_bool_dtype(frame[axis]):
        return []
    scale = _scale(values)
    slopes = block_slopes(frame.assign(**{axis: values}), axis, metric, blocks(sweep, axis), scale)
    if not len(slopes):
        return []
    return [Tested({"axis": axis, "metric": metric, "scale": scale}, slopes, stats.paired(slopes, seed))]
