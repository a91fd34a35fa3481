"""Plots of a sweep (matplotlib, PNG): metric vs each numeric axis, learning curves with bands, wall time vs
metric, and a render grid of configs × prompts built from the trials' final renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from analysis.compare import axes_to_compare, group_summary
from analysis.load import Sweep, varied_frame
from dreamfusion.tracking.schema import TURNTABLE_ARTIFACT


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
    """For each numeric axis: the metric's mean ± 95% CI against it, one line per value of another axis."""
    frame = varied_frame(sweep)
    axes = axes_to_compare(sweep)
    paths = []
    for axis in [a for a in axes if a in frame and _numeric(frame, a)]:
        others = [a for a in axes if a != axis and a != "prompt"]
        line_by = others[0] if others else None
        table = group_summary(sweep, [axis] + ([line_by] if line_by else []))
        fig, ax = _figure()
        for label, g in table.groupby(line_by) if line_by else [(sweep.metric, table)]:
            g = g.sort_values(axis)
            ax.errorbar(
                g[axis],
                g["mean"],
                yerr=g["ci95"].fillna(0),
                marker="o",
                capsize=3,
                label=f"{line_by}={label}" if line_by else label,
            )
        ax.set_xlabel(axis)
        ax.set_ylabel(f"{sweep.metric} (mean ± 95% CI)")
        if table[axis].min() > 0 and table[axis].max() / table[axis].min() >= 20:
            ax.set_xscale("log")
        ax.legend(fontsize=8)
        ax.set_title(f"{sweep.name}: {sweep.metric} vs {axis}")
        paths.append(_save(fig, out / f"metric_vs_{axis.replace('.', '_')}.png"))
    return paths


def learning_curves(sweep: Sweep, out: Path, metric: str = "loss") -> Path | None:
    """Mean curve per value of the first compared axis, with a band of ± one std over its runs."""
    curves = sweep.curves
    if curves.empty or metric not in set(curves["metric"]):
        return None
    axes = axes_to_compare(sweep)
    group = next((a for a in axes if a != "prompt"), axes[0] if axes else None)
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


def wall_time_vs_metric(sweep: Sweep, out: Path) -> Path | None:
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    if frame.empty or sweep.metric not in frame:
        return None
    axes = axes_to_compare(sweep)
    group = next((a for a in axes if a != "prompt"), None)
    fig, ax = _figure()
    for label, g in frame.groupby(group) if group else [("trials", frame)]:
        ax.scatter(g["duration_s"] / 60, g[sweep.metric], label=f"{group}={label}" if group else label, alpha=0.8)
    ax.set_xlabel("wall time per trial (min)")
    ax.set_ylabel(sweep.metric)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep.name}: compute vs {sweep.metric}")
    return _save(fig, out / "wall_time_vs_metric.png")


def render_grid(sweep: Sweep, out: Path, cell: int = 128) -> Path | None:
    """Rows: configs (the compared axes other than prompt); columns: prompts; cell: the first frame of the
    lowest-seed finished trial's turntable."""
    import mlflow

    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    if frame.empty:
        return None
    prompt_col = "prompt" if "prompt" in frame else "param:prompt"
    row_axes = [a for a in axes_to_compare(sweep) if a != "prompt"]
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
            try:
                local = mlflow.artifacts.download_artifacts(
                    run_id=match.iloc[0]["run_id"], artifact_path=TURNTABLE_ARTIFACT, tracking_uri=sweep.tracking_uri
                )
            except Exception:  # a trial that died before its final renders leaves a blank cell
                continue
            with Image.open(local) as gif:
                tile = gif.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            canvas.paste(tile, (label_w + j * cell, label_h + i * cell))
    return _save_image(canvas, out / "render_grid.png")


def _save_image(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def all_plots(sweep: Sweep, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = metric_vs_axes(sweep, out)
    paths += [
        p
        for p in (
            learning_curves(sweep, out, "loss"),
            learning_curves(sweep, out, sweep.metric),
            wall_time_vs_metric(sweep, out),
            render_grid(sweep, out),
        )
        if p is not None
    ]
    return paths
