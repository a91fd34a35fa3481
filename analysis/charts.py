"""The findings as pictures (matplotlib, PNG): the paired comparisons as a forest of mean differences with their
Holm-level intervals, parameter importance as bars, and config → metric as parallel coordinates."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from analysis.compare import levels
from analysis.load import Sweep, varied_frame
from analysis.verdicts import outcome

#: Coloured by how level_a fares (`verdicts.outcome`), not by the sign: green is better whichever way the metric runs.
OUTCOME_COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "same": "#8c959f", "differs": "#0969da"}
OUTCOME_LEGEND = "a − b; green: a better, red: a worse, grey: same, blue: differs, better unknown"


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def forest(comparisons: pd.DataFrame, out: Path) -> Path | None:
    """One panel per metric, one row per pair of levels: the mean difference and its interval, coloured by the
    outcome; an interval the pairs cannot close (too few of them) runs off the panel as an arrow."""
    if comparisons.empty:
        return None
    metrics = list(dict.fromkeys(comparisons["metric"]))
    height = max(2.5, 0.32 * comparisons.groupby("metric").size().max() + 1.2)
    fig = Figure(figsize=(5.5 * len(metrics), height))
    for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
        rows = comparisons[comparisons["metric"] == metric].reset_index(drop=True)
        finite = pd.concat([rows["delta"], rows["ci_low"], rows["ci_high"]]).replace([np.inf, -np.inf], np.nan)
        span = float(finite.abs().max()) if finite.notna().any() else 1.0
        limit = 1.15 * (span or 1.0)
        for i, (r, found) in enumerate(zip(rows.to_dict("records"), rows.apply(outcome, axis=1))):
            y = len(rows) - 1 - i
            colour = OUTCOME_COLOURS[found]
            low, high = max(r["ci_low"], -limit), min(r["ci_high"], limit)
            ax.plot([low, high], [y, y], color=colour, lw=2)
            ax.plot([r["delta"]], [y], "o", color=colour)
            for end, edge, marker in ((r["ci_low"], -limit, "<"), (r["ci_high"], limit, ">")):
                if math.isinf(end):
                    ax.plot([edge], [y], marker, color=colour)
        ax.axvline(0, color="black", lw=0.8)
        ax.set_xlim(-limit, limit)
        labels = [f"{r.axis.split('.')[-1]}: {r.level_a} − {r.level_b}" for r in rows.itertuples()]
        ax.set_yticks(range(len(rows)), labels[::-1], fontsize=8)
        ax.set_xlabel(f"Δ {metric}: mean over pairs, Holm-level CI", fontsize=9)
        ax.set_title(metric)
    fig.suptitle(OUTCOME_LEGEND, fontsize=9)
    return _save(fig, out / "comparisons.png")


def importance_bars(importance: pd.DataFrame, metric: str, out: Path) -> Path | None:
    if importance.empty:
        return None
    fig = Figure(figsize=(6, 0.4 * len(importance) + 1.2))
    ax = fig.subplots()
    ax.barh(importance["param"][::-1], importance["importance"][::-1], color="#0969da")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of {metric}'s variance explained alone (η²)")
    ax.set_title("What mattered")
    return _save(fig, out / "importance.png")


def coordinates(values: pd.Series, order: list | None = None) -> tuple[np.ndarray, list[float], list[str]]:
    """Positions in [0, 1] on a parallel axis, and its ticks: numbers linearly (log10 for ladders spanning 20× or
    more), anything else as evenly spaced levels in `order` (the spec's), then sorted."""
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values.nunique() > 1:
        x = values.astype(float)
        x = np.log10(x) if x.min() > 0 and x.max() / x.min() >= 20 else x
        lo, hi = float(x.min()), float(x.max())
        return ((x - lo) / (hi - lo)).to_numpy(), [0.0, 1.0], [f"{values.min():g}", f"{values.max():g}"]
    seen = values.astype(str).unique()
    levels = list(dict.fromkeys([str(v) for v in order or [] if str(v) in seen] + sorted(seen)))
    step = 1 / max(len(levels) - 1, 1)
    codes = values.astype(str).map({v: i * step for i, v in enumerate(levels)}).to_numpy(dtype=float)
    return codes, [i * step for i in range(len(levels))], [v[:18] for v in levels]


def dimensions(sweep: Sweep) -> list[str]:
    """What a parallel-coordinates plot shows, left to right: the varied keys (and the sweep), then the metric."""
    frame = varied_frame(sweep)
    keys = [k for k in sweep.varied if k in frame] + (["sweep"] if len(sweep.sources) > 1 else [])
    return [*keys, sweep.metric]


def parallel_coordinates(sweep: Sweep, out: Path) -> Path | None:
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    if frame.empty or sweep.metric not in frame or frame[sweep.metric].isna().all():
        return None
    frame = frame.dropna(subset=[sweep.metric])
    dims = dimensions(sweep)
    fig = Figure(figsize=(max(6, 2.2 * len(dims)), 4.5))
    ax = fig.subplots()
    columns = [coordinates(frame[d], levels(sweep, d)) for d in dims]
    positions = np.stack([c[0] for c in columns], axis=1)  # [trials, dims]
    metric = frame[sweep.metric].to_numpy(dtype=float)
    span = np.ptp(metric) or 1.0
    cmap = colormaps["viridis"]
    for row, value in zip(positions, metric):
        ax.plot(range(len(dims)), row, color=cmap((value - metric.min()) / span), alpha=0.7, lw=1.2)
    for i, (_, ticks, labels) in enumerate(columns):
        ax.axvline(i, color="black", lw=0.8)
        for tick, label in zip(ticks, labels):
            ax.text(i + 0.03, tick, label, fontsize=7, va="center")
    ax.set_xticks(range(len(dims)), dims, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(dims) - 0.4)
    ax.set_title(f"{sweep.name}: config → {sweep.metric} (colour: {sweep.metric}, yellow high)")
    return _save(fig, out / "parallel_coordinates.png")
