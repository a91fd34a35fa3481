"""Summaries of a sweep: per-axis means with 95% confidence intervals, the configs' means side by side, and
DreamFusion's colour/geometry R-precision table. Which differences are real is `paired.py`'s job: a mean table
alone names no winner."""

from __future__ import annotations

import math

import pandas as pd
from scipy import stats

from analysis.load import Sweep, varied_frame


def t_quantile(df: int) -> float:
    """Two-sided 95% quantile of Student's t: seeds are few, so the normal 1.96 would overstate confidence."""
    return float(stats.t.ppf(0.975, df))


def mean_ci(values: pd.Series) -> dict[str, float]:
    """Mean and the half-width of its 95% t-interval (NaN with fewer than two values)."""
    v = values.dropna().astype(float)
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    half = t_quantile(n - 1) * float(v.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "ci95": half, "n": n}


def group_summary(sweep: Sweep, by: list[str], metric: str | None = None) -> pd.DataFrame:
    """One row per value (or pair of values) of the `by` axes: mean ± 95% CI over everything else (seeds, prompts)."""
    metric = metric or sweep.metric
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    if frame.empty or metric not in frame:
        return pd.DataFrame(columns=[*by, "mean", "ci95", "n"])
    rows = [
        {**dict(zip(by, key if isinstance(key, tuple) else (key,))), **mean_ci(g[metric])}
        for key, g in frame.groupby(by, dropna=False, sort=True)
    ]
    return pd.DataFrame(rows)


def axes_to_compare(sweep: Sweep) -> list[str]:
    """The varied axes a reader compares across: everything varied except the replication axis (seed)."""
    return [k for k in sweep.varied if k != "seed"]


def levels(sweep: Sweep, axis: str) -> list:
    """An axis's values in the order the specs list them (grid or choice), then any others sorted; the sweeps in
    the order they were named."""
    if axis == "sweep":
        return sweep.labels
    declared: list = []
    for source in sweep.sources:
        space = (source.spec.get("space") or {}).get(axis) or {}
        values = [tuple(v) if isinstance(v, list) else v for v in space.get("grid", space.get("choice", []))]
        declared += [v for v in values if v not in declared]  # a list as its trials' params hold it: a tuple
    column = f"param:{axis}" if f"param:{axis}" in sweep.trials else axis
    seen = sweep.trials[column].dropna().unique() if column in sweep.trials else []
    return [v for v in declared if v in set(seen)] + sorted((v for v in seen if v not in declared), key=str)


def config_means(sweep: Sweep, metric: str | None = None) -> pd.DataFrame:
    """Each config (combination of the compared axes other than prompt) with its mean ± 95% CI over prompts and
    seeds, best first where the metric's direction is known (highest first where not). Descriptive:
    `comparisons.csv` says which gaps are real."""
    metric = metric or sweep.metric
    axes = [a for a in axes_to_compare(sweep) if a != "prompt"] or axes_to_compare(sweep)
    axes += ["sweep"] if len(sweep.sources) > 1 else []
    if not axes:
        return pd.DataFrame(columns=["mean", "ci95", "n"])
    table = group_summary(sweep, axes, metric)
    ascending = sweep.direction(metric) == "min"
    return table.sort_values("mean", ascending=ascending, na_position="last").reset_index(drop=True)


def dreamfusion_table(sweep: Sweep, ground_truth: dict[str, float] | None = None) -> pd.DataFrame:
    """Colour and textureless-geometry R-precision per config (mean ± CI), with a ground-truth row when the prior
    provides one, as DreamFusion's Table 1 reports them."""
    axes = [a for a in axes_to_compare(sweep) if a != "prompt"] or ["run_name"]
    colour = group_summary(sweep, axes, "clip_r_precision").rename(columns={"mean": "colour", "ci95": "colour ±"})
    geometry = (
        group_summary(sweep, axes, "clip_r_precision_geometry")
        .rename(columns={"mean": "geometry", "ci95": "geometry ±"})
        .drop(columns="n")
    )
    table = colour.merge(geometry, on=axes, how="outer")
    if ground_truth:
        gt = dict.fromkeys(axes, "ground truth")
        table = pd.concat(
            [
                pd.DataFrame([{**gt, "colour": ground_truth.get("colour"), "geometry": ground_truth.get("geometry")}]),
                table,
            ],
            ignore_index=True,
        )
    table["n"] = table["n"].astype("Int64")  # stays an integer beside the ground-truth row's missing n
    return table[[*axes, "colour", "colour ±", "geometry", "geometry ±", "n"]]
