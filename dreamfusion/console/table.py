"""How a sweep reads on a terminal: the expanded trial table, trial names made of the values they vary, and the
left-aligned tables of `--dry-run`, `validate` and `status`."""

from __future__ import annotations

import itertools
from typing import Any

from dreamfusion.console.cost import cost_lines
from dreamfusion.sweep.space import Dimension, fmt_value
from dreamfusion.sweep.spec import MODEL_BASED, SweepSpec

#: What the table shows for a dimension whose condition does not hold in a trial (the key keeps its base value).
OFF = "-"

#: A dry run prints every trial up to this many; past it, the first rows and a summary of each dimension.
DRY_RUN_ROWS = 50


def trial_table(spec: SweepSpec, limit: int | None = None) -> list[dict[str, str]]:
    """The trials as rows (the first `limit`), as many as the sweep runs: grid points enumerated (`num_samples`
    times over, lazily: a grid may be huge), sampled dimensions shown as their distribution, a dimension whose
    condition fails as `-`. A model-based searcher draws its trials one by one from the results so far: one row
    stands for all of them."""
    if spec.tune.search in MODEL_BASED:
        n = spec.tune.num_samples
        return [{"#": f"0-{n - 1}" if n > 1 else "0", **{k: _drawn(d) for k, d in spec.space.items()}}]
    points = itertools.chain.from_iterable(spec.grid_points() for _ in range(spec.tune.num_samples))
    return [
        {"#": str(i), **{k: fmt_value(point[k]) if k in point else _cell(d, point) for k, d in spec.space.items()}}
        for i, point in enumerate(itertools.islice(points, limit))
    ]


def _cell(dim: Dimension, point: dict[str, Any]) -> str:
    """A dimension the grid point does not fix: off, drawn, or drawn where a drawn condition holds."""
    if dim.condition is not None and dim.condition[0] in point:
        return dim.describe() if dim.holds(point) else OFF
    return _drawn(dim)


def _drawn(dim: Dimension) -> str:
    if dim.condition is None:
        return dim.describe()
    key, values = dim.condition
    return f"{dim.describe()} if {key.rpartition('.')[2]} in {{{', '.join(fmt_value(v) for v in values)}}}"


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
    """`6 trials (3 grid point(s) x num_samples 2, sampling sds.guidance_scale)`, or for a model-based searcher
    `12 trials drawn by optuna (seed 0) from sds.guidance_scale, ...`; counted without enumerating."""
    sampled = [k for k, d in spec.space.items() if d.kind != "grid"]
    t = spec.tune
    if t.search in MODEL_BASED:
        seed = f", seed {t.seed}" if t.seed is not None else ""
        return f"{spec.num_trials():,} trials drawn one by one by {t.search}{seed} from {', '.join(sampled)}"
    how = f"{spec.grid_size():,} grid point(s) x num_samples {t.num_samples}" + (
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


def dry_run_lines(spec: SweepSpec, slots: int | None = None) -> list[str]:
    """The count, the search and scheduler, the table of trials, and what they will cost (and how long they take
    on `slots` trials at once, where known). Over DRY_RUN_ROWS trials, the table is the first rows and a line per
    dimension: a dry run of a large sweep is a summary, not every row."""
    t = spec.tune
    how = f"search {t.search}, scheduler {t.scheduler}" + (
        f" (perturbing {', '.join(t.pbt.mutate)} every {t.pbt.perturbation_interval} steps)"
        if t.scheduler == "pbt"
        else ""
    )
    header = f"sweep {spec.name}: {count_text(spec)}; {how}"
    rows = 1 if t.search in MODEL_BASED else spec.num_trials()  # a model-based search is one row
    if rows <= DRY_RUN_ROWS:
        return [header, format_table(trial_table(spec)), *cost_lines(spec, slots)]
    shown = DRY_RUN_ROWS // 2
    return [
        header,
        *dimension_lines(spec),
        format_table(trial_table(spec, shown)),
        f"... and {rows - shown:,} more trial(s)",
        *cost_lines(spec, slots),
    ]
