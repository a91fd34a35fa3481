"""The report's interactive plots (plotly: hover for the run, drag to zoom, click a legend entry to hide a group,
brush an axis of the parallel coordinates to filter trials). Each figure becomes a `<div>`; the page inlines
plotly's JavaScript once, so report.html needs no network."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from analysis.charts import OUTCOME_COLOURS, OUTCOME_LEGEND, coordinates, dimensions
from analysis.compare import axes_to_compare, levels
from analysis.load import Sweep, varied_frame
from analysis.paired import compared_metrics
from analysis.plots import colour_axis
from analysis.verdicts import outcome

CONFIG = {"displaylogo": False, "responsive": True}


def _finished(sweep: Sweep) -> pd.DataFrame:
    frame = varied_frame(sweep)
    return frame[frame["status"] == "FINISHED"]


def _hover(frame: pd.DataFrame, sweep: Sweep) -> list[str]:
    keys = [k for k in [*sweep.varied, "sweep"] if k in frame]
    return ["<br>".join([str(r["run_name"]), *(f"{k}: {r[k]}" for k in keys)]) for _, r in frame.iterrows()]


def metric_by_level(sweep: Sweep) -> go.Figure | None:
    """A box with every trial as a point, per level of each compared axis (rows) and metric (columns)."""
    frame = _finished(sweep)
    metrics = [m for m in compared_metrics(sweep) if m in frame]
    axes = axes_to_compare(sweep) + (["sweep"] if len(sweep.sources) > 1 else [])
    if frame.empty or not metrics or not axes:
        return None
    fig = make_subplots(len(axes), len(metrics), subplot_titles=[f"{m} by {a}" for a in axes for m in metrics])
    for i, axis in enumerate(axes, start=1):
        for j, metric in enumerate(metrics, start=1):
            data = frame.dropna(subset=[metric])
            fig.add_trace(
                go.Box(
                    x=data[axis].astype(str),
                    y=data[metric],
                    boxpoints="all",
                    jitter=0.4,
                    pointpos=0,
                    hovertext=_hover(data, sweep),
                    hoverinfo="text+y",
                    name=metric,
                    showlegend=False,
                ),
                i,
                j,
            )
            order = [str(level) for level in levels(sweep, axis)]
            fig.update_xaxes(categoryorder="array", categoryarray=order, row=i, col=j)
    fig.update_layout(height=320 * len(axes), title="Every finished trial, by level")
    return fig


def forest(comparisons: pd.DataFrame) -> go.Figure | None:
    """The paired comparisons: mean difference and Holm-level interval (arrows: unbounded), coloured by outcome."""
    if comparisons.empty:
        return None
    metrics = list(dict.fromkeys(comparisons["metric"]))
    fig = make_subplots(len(metrics), 1, subplot_titles=[f"Δ {m}" for m in metrics], vertical_spacing=0.12)
    for j, metric in enumerate(metrics, start=1):
        rows = comparisons[comparisons["metric"] == metric]
        finite = rows[["delta", "ci_low", "ci_high"]].replace([np.inf, -np.inf], np.nan).abs().max().max()
        limit = 1.15 * (float(finite) if pd.notna(finite) and finite > 0 else 1.0)
        for result, group in rows.groupby(rows.apply(outcome, axis=1)):
            labels = [f"{r.axis}: {r.level_a} − {r.level_b}" for r in group.itertuples()]
            high = np.minimum(group["ci_high"], limit) - group["delta"]
            low = group["delta"] - np.maximum(group["ci_low"], -limit)
            text = [
                f"Δ {r.delta:.4g}  CI [{r.ci_low:.4g}, {r.ci_high:.4g}]<br>p_adj {r.p_adj:.3g}  n {r.n}  "
                f"seeds for 80% power {'–' if pd.isna(r.seeds_needed) else r.seeds_needed}"
                for r in group.itertuples()
            ]
            fig.add_trace(
                go.Scatter(
                    x=group["delta"],
                    y=labels,
                    mode="markers",
                    marker={"color": OUTCOME_COLOURS[str(result)], "size": 9},
                    error_x={"type": "data", "symmetric": False, "array": high, "arrayminus": low},
                    name=f"a {result}",
                    legendgroup=str(result),
                    showlegend=j == 1,
                    hovertext=text,
                    hoverinfo="text+y",
                ),
                j,
                1,
            )
        fig.add_vline(x=0, line_width=1, line_color="black", row=j, col=1)
        fig.update_xaxes(range=[-limit, limit], row=j, col=1)
    fig.update_layout(height=len(metrics) * max(220, 28 * comparisons.groupby("metric").size().max() + 90))
    fig.update_layout(title=f"Paired comparisons ({OUTCOME_LEGEND})")
    return fig


def importance_bars(importance: pd.DataFrame, metric: str) -> go.Figure | None:
    if importance.empty:
        return None
    fig = go.Figure(go.Bar(x=importance["importance"][::-1], y=importance["param"][::-1], orientation="h"))
    fig.update_layout(title=f"What mattered: share of {metric}'s variance each key explains alone (η²)")
    fig.update_xaxes(range=[0, 1])
    return fig


def parallel(sweep: Sweep) -> go.Figure | None:
    frame = _finished(sweep)
    if frame.empty or sweep.metric not in frame or frame[sweep.metric].isna().all():
        return None
    frame = frame.dropna(subset=[sweep.metric])
    dims = []
    for name in dimensions(sweep):
        values, ticks, labels = coordinates(frame[name], levels(sweep, name))
        if name == sweep.metric:
            dims.append({"label": name, "values": frame[name].astype(float)})
        else:
            dims.append({"label": name, "values": values, "tickvals": ticks, "ticktext": labels, "range": [0, 1]})
    line = {"color": frame[sweep.metric].astype(float), "colorscale": "Viridis", "showscale": True}
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(title=f"Config → {sweep.metric} (drag along an axis to filter)")
    return fig


def curves(sweep: Sweep, metric: str = "loss") -> go.Figure | None:
    """Every run's curve, smoothed like the PNG's, grouped (one legend entry per level) by the colour axis."""
    data = sweep.curves
    if data.empty or metric not in set(data["metric"]):
        return None
    data = data[data["metric"] == metric]
    group = colour_axis(sweep)
    fig = go.Figure()
    palette = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#e16f24", "#57606a"]
    levels = list(dict.fromkeys(data[group].astype(str))) if group in data else ["all"]
    names = sweep.trials.set_index("run_id")["run_name"]
    for run_id, run in data.groupby("run_id", sort=False):
        run = run.sort_values("step")
        level = str(run[group].iloc[0]) if group in run else "all"
        window = max(len(run) // 30, 1)
        fig.add_trace(
            go.Scatter(
                x=run["step"],
                y=run["value"].rolling(window, min_periods=1).mean(),
                mode="lines",
                line={"color": palette[levels.index(level) % len(palette)], "width": 1},
                name=f"{group}={level}" if group else level,
                legendgroup=level,
                showlegend=level not in {t.legendgroup for t in fig.data},
                hovertext=str(names.get(run_id, run_id)),
                hoverinfo="text+x+y",
            )
        )
    fig.update_layout(title=f"{metric} per run (click a legend entry to hide its runs)", xaxis_title="step")
    return fig


def compute(sweep: Sweep) -> go.Figure | None:
    frame = _finished(sweep)
    if frame.empty or sweep.metric not in frame or frame["compute_s"].isna().all():
        return None
    group = colour_axis(sweep)
    fig = go.Figure()
    for level, g in frame.groupby(group) if group else [("trials", frame)]:
        fig.add_trace(
            go.Scatter(
                x=g["compute_s"] / 60,
                y=g[sweep.metric],
                mode="markers",
                name=f"{group}={level}" if group else str(level),
                hovertext=_hover(g, sweep),
                hoverinfo="text+x+y",
            )
        )
    fig.update_layout(
        title=f"Compute (summed step time) vs {sweep.metric}",
        xaxis_title="compute per trial (min)",
        yaxis_title=sweep.metric,
    )
    return fig


def figures(sweep: Sweep, comparisons: pd.DataFrame, importance: pd.DataFrame) -> dict[str, go.Figure]:
    """The report's interactive figures, titled, in reading order (those with nothing to show left out)."""
    found = {
        "Paired comparisons": forest(comparisons),
        "What mattered": importance_bars(importance, sweep.metric),
        "Config → metric": parallel(sweep),
        "Trials by level": metric_by_level(sweep),
        "Learning curves: loss": curves(sweep, "loss"),
        f"Learning curves: {sweep.metric}": curves(sweep, sweep.metric),
        "Compute vs metric": compute(sweep),
    }
    return {title: fig for title, fig in found.items() if fig is not None}


def div(fig: go.Figure) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config=CONFIG)
