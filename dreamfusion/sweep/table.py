"""How a sweep reads on a terminal: the expanded trial table, trial names made of the values they vary, and the
left-aligned tables of `--dry-run`, `validate` and `status`."""

from __future__ import annotations

import itertools
from typing import Any

from dreamfusion.sweep.spec import SweepSpec, fmt_value

#: A dry run prints every grid point up to this many; past it, the first rows and a summary of each dimension.
DRY_RUN_ROWS = 50


def trial_table(spec: SweepSpec, limit: int | None = None) -> list[dict[str, str]]:
    """The expanded trials as rows (the first `limit`): grid points enumerated, sampled dimensions shown as their
    distribution."""
    sampled = {k: d.describe() for k, d in spec.space.items() if d.kind != "grid"}
    return [
        {"#": str(i), **{k: fmt_value(point[k]) if k in point else sampled[k] for k in spec.space}}
        for i, point in enumerate(itertools.islice(spec.grid_points(), limit))
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
    """`6 trials (3 grid point(s) x num_samples 2, sampling sds.guidance_scale)`, counted without enumerating."""
    sampled = [k for k, d in spec.space.items() if d.kind != "grid"]
    how = f"{spec.grid_size():,} grid point(s) x num_samples {spec.tune.num_samples}" + (
        f", sampling {', '.join(sampled)}" if sampled else ""
    )
    return f"{spec.num_trials():,} trials ({how})"


def dimension_lines(spec: SweepSpec) -> list[str]:
    """One line per dimension: `prompt: grid of 1,000 values ('a red cube', ...)`: a huge sweep at a glance."""
    lines = []
    for key, dim in spec.space.items():
        if dim.kind == "grid":
            shown = ", ".join(fmt_value(v) for v in dim.argument[:3]) + (", ..." if len(dim.argument) > 3 else "")
            lines.append(f"  {key}: grid of {len(dim.argument):,} value(s) ({shown})")
        else:
            lines.append(f"  {key}: {dim.describe()}")
    return lines


def dry_run_lines(spec: SweepSpec) -> list[str]:
    """The header and the grid's table; a grid over DRY_RUN_ROWS points shows its first rows and its dimensions."""
    points = spec.grid_size()
    lines = [f"sweep {spec.name}: {count_text(spec)}"]
    if points <= DRY_RUN_ROWS:
        return [*lines, format_table(trial_table(spec))]
    shown = DRY_RUN_ROWS // 2
    return [
        *lines,
        *dimension_lines(spec),
        format_table(trial_table(spec, shown)),
        f"... and {points - shown:,} more grid point(s)",
    ]
