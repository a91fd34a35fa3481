"""`df-sweep report NAME [NAME...] --out DIR` (also `python -m analysis.report`): sweeps in MLflow → findings.

Writes report.html (interactive, offline), report.md, and the data behind every sentence: trials.csv,
curves.csv, comparisons.csv (paired tests, Holm-adjusted), trends.csv, importance.csv and, when several sweeps
or launches are compared, settings.csv (what differs between them), plus the plots as PNG.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import charts, page
from analysis.compare import axes_to_compare, config_means, dreamfusion_table, group_summary
from analysis.differences import differences
from analysis.folder import check_out, replaced
from analysis.importance import importance
from analysis.interactive import figures
from analysis.load import Sweep, load_sweeps
from analysis.media import fetch_turntables
from analysis.paired import tested
from analysis.phenomena import COLOUR_CHOICE, diversity_table
from analysis.plots import all_plots
from analysis.verdicts import headline
from dreamfusion.errors import ConfigError

Echo = Callable[[str], None]
MAX_SETTINGS_LISTED = 6


@dataclass
class Findings:
    comparisons: pd.DataFrame
    trends: pd.DataFrame
    importance: pd.DataFrame
    settings: pd.DataFrame
    stale: str | None = None  # one line when trials ran on other weights than the prior ships now


def analyse(sweep: Sweep, shipped: dict[str, str] | None = None) -> Findings:
    """`shipped`: prior kind → the sha256 of the weights it ships (the caller knows them; analysis reads MLflow)."""
    found = Findings(*tested(sweep), importance(sweep), differences(sweep))
    found.stale = stale_prior(sweep, shipped or {})
    return found


def stale_prior(sweep: Sweep, shipped: dict[str, str]) -> str | None:
    """A line saying the trials' numbers are stale, where some ran on a prior kind that ships weights (`shipped`:
    kind → their sha256) but recorded another sha256, or none (runs logged before the tag): they were not measured
    on the weights that ship now. None where every such trial matches, or none ran on such a kind."""
    if "param:prior.kind" not in sweep.trials:
        return None
    runs = [(r, k) for r, k in zip(sweep.trials["run_id"], sweep.trials["param:prior.kind"]) if k in shipped]
    stale = [(r, k) for r, k in runs if sweep.prior_sha256.get(r) != shipped[k]]
    if not stale:
        return None
    short = lambda sha: f"{sha[:12]}…" if sha else "not recorded"
    measured = ", ".join(sorted({short(sweep.prior_sha256.get(r, "")) for r, _ in stale}))
    kinds = sorted({k for _, k in stale})
    ships = ", ".join(f"{short(shipped[k])}" for k in kinds)
    return (
        f"Stale: {len(stale)} of {len(runs)} trials on the {', '.join(kinds)} prior ran on other weights than the "
        f"shipped ones (sha256 {measured}; shipped {ships}); launch the sweep again for the shipped prior's numbers."
    )


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
    """The descriptive tables (means with 95% CIs), in reading order; the verdicts are comparisons.csv's."""
    out = {
        f"Means by config ({sweep.metric}; descriptive, see the comparisons for what differs)": config_means(sweep),
        "R-precision, colour and geometry (DreamFusion Table 1 style)": dreamfusion_table(sweep, ground_truth(sweep)),
    }
    colours = sweep.levels.get(COLOUR_CHOICE, [])
    diversity = diversity_table(sweep.finished, sweep.varied, colours)
    if len(diversity):
        uniform = f"log2 {len(colours)} = {math.log2(len(colours)):.3f} bits is uniform"
        out[f"Colour diversity across seeds (colour-unspecified prompts; {uniform})"] = diversity
    for axis in axes_to_compare(sweep):
        out[f"By {axis}"] = group_summary(sweep, [axis])
    return out


def _settings_line(settings: pd.DataFrame) -> str:
    if settings.empty:
        return "The compared sweeps differ in no setting and no component version."
    shown = [
        f"{r['setting']} ({' vs '.join(str(r[c]) for c in settings.columns[2:])})"
        for _, r in settings.head(MAX_SETTINGS_LISTED).iterrows()
    ]
    more = f", and {len(settings) - MAX_SETTINGS_LISTED} more" if len(settings) > MAX_SETTINGS_LISTED else ""
    versions = settings[settings["kind"] == "component version"]
    warn = f" Component versions differ: {', '.join(versions['setting'])}." if len(versions) else ""
    return f"Before comparing: the sweeps differ in {', '.join(shown)}{more} (settings.csv).{warn}"


def _trial_count(sweep: Sweep) -> str:
    """`8 of 8 expected trials (8 finished)`; the expected count as the launches recorded it, or said unknown."""
    status = sweep.trials["status"].value_counts().to_dict() if len(sweep.trials) else {}
    states = ", ".join(f"{n} {s.lower()}" for s, n in status.items()) or "none"
    expected = sweep.expected_trials
    if expected is None:
        return f"{len(sweep.trials)} trials ({states}; how many were expected is unknown: not recorded at launch)"
    return f"{len(sweep.trials)} of {expected} expected trials ({states})"


def summary_lines(sweep: Sweep, findings: Findings) -> list[str]:
    kind = "Sweep" if len(sweep.sources) == 1 else "Sweeps"
    lines = [
        f"{kind} `{sweep.name}` — {_trial_count(sweep)}; "
        f"varied: {', '.join(sweep.varied) or 'nothing'}; metric: {sweep.metric} ({sweep.mode}).",
    ]
    if sweep.spec.get("description"):
        lines.insert(0, " ".join(str(sweep.spec["description"]).split()))
    if findings.stale:
        lines.append(findings.stale)
    if len(sweep.sources) > 1:
        lines.append(_settings_line(findings.settings))
    for source in (s for s in sweep.sources if len(s.parent_run_ids) > 1):
        n = len(source.parent_run_ids)
        lines.append(
            f"`{source.label}` pools its {n} launches; to see whether they differ: "
            f"df-sweep report {source.label}@1 {source.label}@-1"
        )
    lines += headline(sweep, findings.comparisons, findings.trends)
    if sweep.missing:
        lines.append(f"{'Partial sweep' if len(sweep.finished) else 'No finished trial'}: {'; '.join(sweep.missing)}.")
    return lines


def _cell(v: object) -> object:
    """Floats to 4 significant digits; missing values (None, NaN, pd.NA) blank."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return ""
    return f"{v:.4g}" if isinstance(v, float) else v


def _fmt(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.map(_cell)


def markdown_table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_empty_"
    frame = _fmt(frame)
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _sections(sweep: Sweep, findings: Findings) -> list[tuple[str, pd.DataFrame]]:
    """The tables of both pages, in reading order."""
    found = [("Settings that differ", findings.settings)] if len(sweep.sources) > 1 else []
    found += [("Paired comparisons", findings.comparisons)]
    found += [("Trends along numeric axes", findings.trends)] if len(findings.trends) else []
    found += [("What mattered", findings.importance)]
    return found + list(tables(sweep).items())


def _markdown(sweep: Sweep, findings: Findings, plots: list[Path], files: list[str]) -> str:
    parts = [f"# Sweep report: {sweep.name}", "", *[f"{line}\n" for line in summary_lines(sweep, findings)]]
    for title, frame in _sections(sweep, findings):
        parts += [f"## {title}", "", markdown_table(frame), ""]
    parts += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    links = ", ".join(f"[{f}]({f})" for f in files)
    parts += ["", f"Data: {links}. Source: {sweep.tracking_uri}, experiment(s) {_experiments(sweep)}."]
    return "\n".join(parts) + "\n"


def _experiments(sweep: Sweep) -> str:
    return ", ".join(dict.fromkeys(s.experiment_id for s in sweep.sources))


#: A trial's identity in the report: with its varied values, what the filter box of report.html matches.
IDENTITY = ("run_name", "sweep", "status")


def _html(sweep: Sweep, findings: Findings, out: Path, media: pd.DataFrame, files: list[str]) -> str:
    figs = figures(sweep, findings.comparisons, findings.importance)
    sections = [(title, page.table(_fmt(frame))) for title, frame in _sections(sweep, findings)]
    captions = sweep.trials.set_index("run_id")
    settings = [*IDENTITY, *(f"param:{k}" for k in sweep.varied)]
    media = media.assign(
        caption=[_caption(captions.loc[r], sweep.metric) for r in media["run_id"]],
        settings=[captions.loc[r].reindex(settings) for r in media["run_id"]],
    )
    grid = out / "render_grid.png"
    renders = (page.embedded_png(grid) if grid.is_file() else "") + page.gallery(media)
    after = next(i for i, (title, _) in enumerate(sections) if title == "What mattered") + 1
    sections[after:after] = [("Config → metric", ""), ("Trials by level", ""), ("Renders", renders)]
    shown = sweep.trials.drop(columns=["artifact_uri"]).rename(columns=lambda c: c.removeprefix("param:"))
    keep = [*IDENTITY, "compute_s", *sweep.varied, sweep.metric, "gt_iou", "gt_colour_error"]
    columns = [c for c in dict.fromkeys(keep) if c in shown]
    sections.append(("Trials", page.trial_table(_fmt(shown[columns]), [*IDENTITY, *sweep.varied])))
    return page.render(f"Sweep report: {sweep.name}", summary_lines(sweep, findings), sections, figs, files)


def _caption(trial: pd.Series, metric: str) -> str:
    value = trial.get(metric)
    return f"{trial['run_name']} — {metric} {value:.4g}" if isinstance(value, float) else str(trial["run_name"])


def trials_table(sweep: Sweep) -> pd.DataFrame:
    """trials.csv: identity and status, compute, the varied keys, the metrics, then every other param and the
    components' `name@version`."""
    t = sweep.trials
    first = ["run_id", "run_name", "sweep", "status", "compute_s", "wall_s", "failure"]
    varied = [f"param:{k}" for k in sweep.varied]
    metrics = sorted(c for c in t if ":" not in c and c not in [*first, "artifact_uri"])
    rest = sorted(c for c in t if c.startswith("param:") and c not in varied)
    components = sorted(c for c in t if c.startswith("component:"))
    ordered = t[[*first, *varied, *metrics, *rest, *components, "artifact_uri"]]
    return ordered.rename(columns=lambda c: c.removeprefix("param:").replace("component:", "component."))


def write_report(
    sweep: Sweep, out: Path, echo: Echo = lambda _: None, findings: Findings | None = None
) -> dict[str, Path]:
    """The report's files in `out`, which is replaced whole (`analysis/folder.py`: nothing of a previous report
    stays beside the new one, and a failed report leaves the previous one as it was)."""
    findings = findings or analyse(sweep)
    with replaced(out) as staging:
        written = _write(sweep, staging, echo, findings)
    return {kind: out / name for kind, name in written.items()}


def _write(sweep: Sweep, out: Path, echo: Echo, findings: Findings) -> dict[str, str]:
    csvs = {
        "trials": trials_table(sweep),
        "curves": sweep.curves,
        "comparisons": findings.comparisons,
        "trends": findings.trends,
        "importance": findings.importance,
        **({"settings": findings.settings} if len(sweep.sources) > 1 else {}),
    }
    for name, frame in csvs.items():
        frame.to_csv(out / f"{name}.csv", index=False)
    echo(f"fetching the turntables of {len(sweep.finished)} finished trials")
    media = fetch_turntables(sweep, out)
    echo("drawing plots and writing the report")
    plots = all_plots(sweep, out, media)
    plots += [
        p
        for p in (
            charts.forest(findings.comparisons, out),
            charts.importance_bars(findings.importance, sweep.metric, out),
            charts.parallel_coordinates(sweep, out),
        )
        if p is not None
    ]
    files = [f"{name}.csv" for name in csvs] + [p.name for p in plots]
    (out / "report.md").write_text(_markdown(sweep, findings, plots, files))
    (out / "report.html").write_text(_html(sweep, findings, out, media, files))
    return {"html": "report.html", "markdown": "report.md", **{n: f"{n}.csv" for n in csvs}}


def report(
    names: list[str],
    out: Path,
    tracking_uri: str | None = None,
    echo: Echo = print,
    shipped: dict[str, str] | None = None,
) -> list[str]:
    """Load the sweeps, write the report; the lines `df-sweep report` prints last (raises ConfigError: a sweep
    the store does not hold, or an `--out` a report may not replace).
    `shipped`: prior kind → the sha256 of the weights it ships, to say when trials ran on others."""
    check_out(out)  # before the work: a folder a report may not replace is said at once
    echo(f"reading {', '.join(names)} from MLflow")
    sweep = load_sweeps(names, tracking_uri)
    findings = analyse(sweep, shipped)
    paths = write_report(sweep, out, echo, findings)
    return ["", *summary_lines(sweep, findings), "", *(f"  {kind:12s} {path}" for kind, path in paths.items())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__)
    ap.add_argument("names", nargs="+", metavar="NAME", help="a sweep, or NAME@LAUNCH for one launch of it")
    ap.add_argument("--out", type=Path, default=Path("report"))
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument(
        "--shipped",
        action="append",
        default=[],
        metavar="KIND=SHA256",
        help="a prior kind and the sha256 of the weights it ships: trials on other weights are reported stale",
    )
    args = ap.parse_args(argv)
    shipped = dict(pair.split("=", 1) for pair in args.shipped)
    try:
        print("\n".join(report(args.names, args.out, args.tracking_uri, shipped=shipped)))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
