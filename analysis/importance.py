"""What mattered: the share of the metric's variance over trials that each varied key explains on its own.

It is the first-order term of a functional ANOVA (fANOVA) of the trials as sampled: for each key, the variance of
the metric's mean at each of its values, weighted by how many trials took it, over the metric's total variance
(η²). On a full grid these terms are exact and add up to at most 1; the rest is interactions and noise. A key drawn
per trial (uniform, loguniform) is cut into quantile bins first, or each trial would be a level of its own. With
few trials per level η² is biased upward by about (levels − 1)/(trials − 1): the seed's row is the yardstick of
what noise alone explains.
"""

from __future__ import annotations

import pandas as pd

from analysis.load import Sweep, varied_frame

MAX_BINS = 5


def _levels(values: pd.Series, continuous: bool) -> pd.Series:
    if continuous and values.nunique() > MAX_BINS:
        return pd.qcut(values.astype(float), q=min(MAX_BINS, max(2, len(values) // 4)), duplicates="drop")
    return values.astype(str)


def explained(metric: pd.Series, groups: pd.Series) -> float:
    """η²: between-group sum of squares over the total sum of squares (0 when the metric does not vary)."""
    total = float(((metric - metric.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    means = metric.groupby(groups, observed=True).agg(["mean", "size"])
    return float((means["size"] * (means["mean"] - metric.mean()) ** 2).sum() / total)


def importance(sweep: Sweep, metric: str | None = None) -> pd.DataFrame:
    """importance.csv: `param,importance`, most important first; every varied key, the seed included, and
    `sweep` when several sweeps are compared."""
    metric = metric or sweep.metric
    frame = varied_frame(sweep)
    params = [k for k in sweep.varied if k in frame] + (["sweep"] if len(sweep.sources) > 1 else [])
    frame = frame[frame["status"] == "FINISHED"]
    if metric not in frame:
        return pd.DataFrame(columns=["param", "importance"])
    frame = frame.dropna(subset=[metric])
    rows = [
        {"param": p, "importance": explained(frame[metric], _levels(frame[p], p in sweep.continuous))} for p in params
    ]
    table = pd.DataFrame(rows, columns=["param", "importance"])
    return table.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
