"""Plots of a sweep (matplotlib, PNG, for report.md and for anyone who wants the files): metric vs each numeric
axis, learning curves with bands, compute vs metric, and a render grid of configs × prompts built from the trials'
turntables. report.html shows the same data interactively (`interactive.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from analysis.compare import axes_to_compare, group_summary
from analysis.load import Sweep, varied_frame
from analysis.paired import compared_metrics


def _numeric(frame: pd.DataFrame, key: str) -> bool:
    return (
        pd.api.types.is_numeric_dtype(frame[key])
        and not pd.api.types.is_bool_dtype(frame[key])
        and frame[key].nunique() > 1
    )


def _figure() -> tuple[Figure, Any]:
    """A figure and its axes, without pyplot: no GUI backend, no global state, safe in any thread."""
    fig = Figure(figsize=(6, 4))
    return fig, fig.subplots()


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def metric_vs_axes(sweep: Sweep, out: Path) -> list[Path]:
    """For each numeric axis, a panel per compared metric: its mean ± 95% CI against the axis, one line per value
    of another axis."""
    frame = varied_frame(sweep)
    axes = axes_to_compare(sweep)
    metrics = list(compared_metrics(sweep)) or [sweep.metric]
    paths = []
    for axis in [a for a in axes if a in frame and _numeric(frame, a)]:
        others = [a for a in axes if a != axis and a != "prompt"] + (["sweep"] if len(sweep.sources) > 1 else [])
        line_by = others[0] if others else None
        fig = Figure(figsize=(5 * len(metrics), 4))
        for ax, metric in zip(fig.subplots(1, len(metrics), squeeze=False)[0], metrics):
            table = group_summary(sweep, [axis] + ([line_by] if line_by else []), metric)
            for label, g in table.groupby(line_by) if line_by else [(metric, table)]:
                g = g.sort_values(axis)
                name = f"{line_by}={label}" if line_by else None
                ax.errorbar(g[axis], g["mean"], yerr=g["ci95"].fillna(0), marker="o", capsize=3, label=name)
            ax.set_xlabel(axis)
            ax.set_ylabel(f"{metric} (mean ± 95% CI)")
            if len(table) and table[axis].min() > 0 and table[axis].max() / table[axis].min() >= 20:
                ax.set_xscale("log")
            if line_by:
                ax.legend(fontsize=8)
            ax.set_title(f"{metric} vs {axis}")
        fig.suptitle(sweep.name)
        paths.append(_save(fig, out / f"metric_vs_{axis.replace('.', '_')}.png"))
    return paths


def learning_curves(sweep: Sweep, out: Path, metric: str = "loss") -> Path | None:
    """Mean curve per value of the first compared axis, with a band of ± one std over its runs."""
    curves = sweep.curves
    if curves.empty or metric not in set(curves["metric"]):
        return None
    axes = axes_to_compare(sweep)
    group = colour_axis(sweep) or (axes[0] if axes else None)
    data = curves[curves["metric"] == metric]
    fig, ax = _figure()
    for label, g in data.groupby(group) if group in data else [("all", data)]:
        stats = g.groupby("step")["value"].agg(["mean", "std"]).sort_index()
        smooth = stats.rolling(max(len(stats) // 30, 1), min_periods=1).mean()
        ax.plot(smooth.index, smooth["mean"], label=f"{group}={label}" if group else label)
        ax.fill_between(
            smooth.index, smooth["mean"] - smooth["std"].fillna(0), smooth["mean"] + smooth["std"].fillna(0), alpha=0.2
        )
    ax.set_xlabel("step")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.name}: {metric} (mean ± std over runs)")
    return _save(fig, out / f"curves_{metric}.png")


def compute_vs_metric(sweep: Sweep, out: Path) -> Path | None:
    """Each finished trial's metric against its compute (summed step time, not wall time)."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    if frame.empty or sweep.metric not in frame or frame["compute_s"].isna().all():
        return None
    group = colour_axis(sweep)
    fig, ax = _figure()
    for label, g in frame.groupby(group) if group else [("trials", frame)]:
        ax.scatter(g["compute_s"] / 60, g[sweep.metric], label=f"{group}={label}" if group else label, alpha=0.8)
    ax.set_xlabel("compute per trial (min, summed step time)")
    ax.set_ylabel(sweep.metric)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.name}: compute vs {sweep.metric}")
    return _save(fig, out / "compute_vs_metric.png")


def colour_axis(sweep: Sweep) -> str | None:
    """The axis that colours a scatter or a curve: the first compared one other than prompt, else the sweep."""
    axes = [a for a in axes_to_compare(sweep) if a != "prompt"]
    return axes[0] if axes else ("sweep" if len(sweep.sources) > 1 else None)


def render_grid(sweep: Sweep, out: Path, turntables: pd.DataFrame, cell: int = 128) -> Path | None:
    """Rows: configs (the compared axes other than prompt); columns: prompts; cell: the first frame of the
    lowest-seed finished trial's turntable (blank where a trial left none)."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"].merge(turntables[turntables["format"] == "gif"], on="run_id")
    if frame.empty:
        return None
    prompt_col = "prompt" if "prompt" in frame else "param:prompt"
    row_axes = [a for a in axes_to_compare(sweep) if a != "prompt"] + (["sweep"] if len(sweep.sources) > 1 else [])
    frame = frame.assign(_row=frame[row_axes].astype(str).agg(", ".join, axis=1) if row_axes else "all")
    frame = frame.sort_values([c for c in ("seed", "param:seed") if c in frame] or ["run_name"])
    rows, cols = sorted(frame["_row"].unique()), sorted(frame[prompt_col].unique())
    label_w, label_h = 220, 18
    canvas = Image.new("RGB", (label_w + cell * len(cols), label_h + cell * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, prompt in enumerate(cols):
        draw.text((label_w + j * cell + 4, 2), str(prompt)[:22], fill="black")
    for i, row in enumerate(rows):
        draw.text((4, label_h + i * cell + cell // 2), str(row)[:34], fill="black")
        for j, prompt in enumerate(cols):
            match = frame[(frame["_row"] == row) & (frame[prompt_col] == prompt)]
            if match.empty:
                continue
            with Image.open(out / match.iloc[0]["path"]) as gif:
                tile = gif.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + j * cell, label_h + i * cell))
    return _save_image(canvas, out / "render_grid.png")


def _save_image(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def all_plots(sweep: Sweep, out: Path, turntables: pd.DataFrame) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = metric_vs_axes(sweep, out)
    paths += [
        p
        for p in (
            learning_curves(sweep, out, "loss"),
            learning_curves(sweep, out, sweep.metric),
            compute_vs_metric(sweep, out),
            render_grid(sweep, out, turntables),
        )
        if p is not None
    ]
    return paths
