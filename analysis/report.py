"""`df-sweep report NAME --out DIR` (also `python -m analysis.report NAME --out DIR`): a sweep in MLflow → a
self-contained HTML report, a Markdown report, `trials.csv`, `curves.csv` and the plots beside them."""

from __future__ import annotations

import argparse
import base64
import html
import math
import sys
from pathlib import Path

import pandas as pd

from analysis.compare import (
    axes_to_compare,
    best_config,
    dreamfusion_table,
    group_summary,
    ranking,
)
from analysis.load import Sweep, SweepNotFound, load_sweep
from analysis.phenomena import diversity_table
from analysis.plots import all_plots


def ground_truth(sweep: Sweep) -> dict[str, float] | None:
    """Mean R-precision of the true objects' own renders, where the trials logged it (toy-world prompts)."""
    t = sweep.finished
    if "gt_clip_r_precision" not in t or t["gt_clip_r_precision"].isna().all():
        return None
    return {
        "colour": float(t["gt_clip_r_precision"].mean()),
        "geometry": float(t.get("gt_clip_r_precision_geometry", pd.Series(dtype=float)).mean()),
    }


def tables(sweep: Sweep) -> dict[str, pd.DataFrame]:
    """The report's tables, in reading order."""
    out = {
        "Ranking": ranking(sweep),
        "R-precision, colour and geometry (DreamFusion Table 1 style)": dreamfusion_table(sweep, ground_truth(sweep)),
    }
    diversity = diversity_table(sweep.finished, sweep.varied)
    if len(diversity):
        out["Colour diversity across seeds (colour-unspecified prompts; log2 6 = 2.585 bits is uniform)"] = diversity
    axes = axes_to_compare(sweep)
    for axis in axes:
        out[f"By {axis}"] = group_summary(sweep, [axis])
    for i, a in enumerate(axes):
        for b in axes[i + 1 :]:
            out[f"By {a} × {b}"] = group_summary(sweep, [a, b])
    return out


def headline(sweep: Sweep) -> str:
    best = best_config(sweep)
    if not best:
        return f"No finished trial has logged {sweep.metric} yet."
    axes = [k for k in best if k not in ("mean", "ci95", "n")]
    config = ", ".join(f"{k} = {best[k]}" for k in axes)
    ci = "" if math.isnan(best.get("ci95", math.nan)) else f" ± {best['ci95']:.3f}"
    return (
        f"Best by {sweep.mode} {sweep.metric}: **{config}** with {best['mean']:.3f}{ci} "
        f"(95% CI over {int(best['n'])} trials)."
    )


def write_report(sweep: Sweep, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    trials_csv, curves_csv = out / "trials.csv", out / "curves.csv"
    sweep.trials.rename(columns=lambda c: c.removeprefix("param:")).to_csv(trials_csv, index=False)
    sweep.curves.to_csv(curves_csv, index=False)
    plots = all_plots(sweep, out)
    tabs = tables(sweep)
    md = out / "report.md"
    md.write_text(_markdown(sweep, tabs, plots))
    page = out / "report.html"
    page.write_text(_html(sweep, tabs, plots))
    return {"html": page, "markdown": md, "trials": trials_csv, "curves": curves_csv, "plots": out}


def _summary_lines(sweep: Sweep) -> list[str]:
    status = sweep.trials["status"].value_counts().to_dict() if len(sweep.trials) else {}
    lines = [
        f"Sweep `{sweep.name}` — {len(sweep.trials)} trials "
        f"({', '.join(f'{n} {s.lower()}' for s, n in status.items()) or 'none'}); "
        f"varied: {', '.join(sweep.varied) or 'nothing'}; metric: {sweep.metric} ({sweep.mode}).",
        headline(sweep),
    ]
    if sweep.spec.get("description"):
        lines.insert(0, str(sweep.spec["description"]).strip())
    if sweep.missing:
        lines.append("Partial sweep: " + "; ".join(sweep.missing) + ".")
    return lines


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(_cell)


def _cell(v: object) -> object:
    """Floats to 3 decimals; missing values (None, NaN, pd.NA) blank."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return f"{v:.3f}" if isinstance(v, float) else v


def markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _markdown(sweep: Sweep, tabs: dict[str, pd.DataFrame], plots: list[Path]) -> str:
    parts = [f"# Sweep report: {sweep.name}", "", *[f"{line}\n" for line in _summary_lines(sweep)]]
    for title, table in tabs.items():
        parts += [f"## {title}", "", markdown_table(_fmt(table)) if len(table) else "_empty_", ""]
    parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    parts += [
        "",
        f"Data: [trials.csv](trials.csv), [curves.csv](curves.csv). Source: {sweep.tracking_uri}, "
        f"experiment {sweep.experiment_id}.",
    ]
    return "\n".join(parts) + "\n"


def _html(sweep: Sweep, tabs: dict[str, pd.DataFrame], plots: list[Path]) -> str:
    """One file with the plots embedded as data URIs, so it can be mailed or attached as is."""
    body = [f"<h1>Sweep report: {html.escape(sweep.name)}</h1>"]
    body += [f"<p>{_bold(html.escape(line))}</p>" for line in _summary_lines(sweep)]
    for title, table in tabs.items():
        body += [
            f"<h2>{html.escape(title)}</h2>",
            _fmt(table).to_html(index=False, border=0, classes="t") if len(table) else "<p><em>empty</em></p>",
        ]
    body.append("<h2>Plots</h2>")
    for p in plots:
        data = base64.b64encode(p.read_bytes()).decode()
        body.append(
            f'<figure><img alt="{p.stem}" src="data:image/png;base64,{data}">'
            f'<figcaption><a href="{p.name}">{p.name}</a></figcaption></figure>'
        )
    body.append('<p>Data: <a href="trials.csv">trials.csv</a>, <a href="curves.csv">curves.csv</a>.</p>')
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table.t{border-collapse:collapse;font-size:14px}table.t td,table.t th{padding:3px 10px;"
        "border-bottom:1px solid #ddd;text-align:right}img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(sweep.name)} report</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n"
    )


def _bold(text: str) -> str:
    """Markdown's **x** in the headline becomes <b>x</b>."""
    parts = text.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def report(name: str, out: Path, tracking_uri: str | None = None, launch: str | None = None) -> list[str]:
    """Load the sweep, write the report; the lines `df-sweep report` prints (raises SweepNotFound)."""
    sweep = load_sweep(name, tracking_uri, launch)
    paths = write_report(sweep, out)
    return [*_summary_lines(sweep), *(f"  {kind:9s} {path}" for kind, path in paths.items())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--out", type=Path, default=Path("report"))
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--launch", default=None, help="one launch's parent run id (default: every launch)")
    args = ap.parse_args(argv)
    try:
        print("\n".join(report(args.name, args.out, args.tracking_uri, args.launch)))
    except SweepNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
