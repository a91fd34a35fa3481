"""How a sweep reads on a terminal: the expanded trial table, trial names made of the values they vary, and the
left-aligned tables of `--dry-run`, `validate` and `status`."""

from __future__ import annotations

from typing import Any

from dreamfusion.sweep.spec import SweepSpec, fmt_value


def trial_table(spec: SweepSpec) -> list[dict[str, str]]:
    """The expanded trials as rows: grid points enumerated, sampled dimensions shown as their distribution."""
    sampled = {k: d.describe() for k, d in spec.space.items() if d.kind != "grid"}
    return [
        {"#": str(i), **{k: fmt_value(point[k]) if k in point else sampled[k] for k in spec.space}}
        for i, point in enumerate(spec.grid_points())
    ]


def short_names(keys: list[str]) -> dict[str, str]:
    """Dotted keys → their last part (`sds.timesteps.schedule` → `schedule`), unless two would then read the same."""
    tails = [k.rpartition(".")[2] for k in keys]
    return {k: t if tails.count(t) == 1 else k for k, t in zip(keys, tails)}


def run_name(values: dict[str, Any]) -> str:
    """`prompt=a red cube,schedule=anneal,seed=0`: a trial named by the values it varies."""
    names = short_names(list(values))
    return ",".join(f"{n}={fmt_value(v)}" for n, v in sorted((names[k], v) for k, v in values.items()))


def format_table(rows: list[dict[str, str]]) -> str:
    """Left-aligned columns under a header: the dry-run, validate and status tables."""
    if not rows:
        return "(no trials)"
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def count_text(spec: SweepSpec) -> str:
    """`6 trials (3 grid point(s) x num_samples 2, sampling sds.guidance_scale)`."""
    points = len(spec.grid_points())
    sampled = [k for k, d in spec.space.items() if d.kind != "grid"]
    how = f"{points} grid point(s) x num_samples {spec.tune.num_samples}" + (
        f", sampling {', '.join(sampled)}" if sampled else ""
    )
    return f"{spec.num_trials()} trials ({how})"


def dry_run_lines(spec: SweepSpec) -> list[str]:
    return [f"sweep {spec.name}: {count_text(spec)}", format_table(trial_table(spec))]
