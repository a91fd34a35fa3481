"""The report's headline, in words: what the paired comparisons and trend tests support, and nothing they do not.
A level is called best only when it beats every other level of its axis at 95% (Holm); otherwise the headline
lists the differences that passed, or says that no difference was detected and the smallest one the design could
have detected (a null is not evidence of equality: it rules out only differences larger than that). One line says
which multiple-comparison family each axis's tests were corrected in."""

from __future__ import annotations

import math

import pandas as pd

from analysis.compare import axes_to_compare
from analysis.load import Sweep, varied_frame
from analysis.paired import blocks

MAX_LISTED = 4
MANY_SEEDS = 1000


def _number(x: float) -> str:
    return f"{x:.3g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def _seeds_range(seeds: pd.Series) -> str:
    """`6`, `6–40`, `6–more than 1,000`: a near-zero difference asks for millions, which is a way of saying never."""
    if seeds.empty:
        return ""
    low, high = (int(seeds.min()), int(seeds.max()))
    text = [str(n) if n <= MANY_SEEDS else f"more than {MANY_SEEDS:,}" for n in dict.fromkeys((low, high))]
    return "–".join(dict.fromkeys(text))


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _holm(family: pd.DataFrame) -> str:
    """`Holm over the 6 tests on schedule`: the axis's family, which spans every compared metric and its trend."""
    axis, size = family["axis"].iloc[0], int(family["family_size"].iloc[0])
    return f"Holm over the {_plural(size, 'test')} on {axis}"


def _detectable(values: pd.Series, what: str, unit: str = "") -> str:
    """The smallest difference the design detects with 80% power, in words: `0.012`, `0.012–0.03`, or that so few
    pairs can detect none."""
    known = values.dropna()
    if known.empty:
        return ""
    if (known == math.inf).all():
        return f"; with so few pairs no {what} could reach 95% whatever its size"
    finite = known[known < math.inf]
    low, high = _number(float(finite.min())), _number(float(finite.max()))
    size = low if low == high else f"{low}–{high}"
    fewer = " (none where there are fewer pairs)" if len(finite) < len(known) else ""
    return f"; the design detects a {what} of {size}{unit} or more with 80% power{fewer}"


def pairing(sweep: Sweep, axis: str) -> str:
    """What a comparison on this axis is paired over, in words: `3 prompts × 4 seeds`."""
    frame = varied_frame(sweep)
    frame = frame[frame["status"] == "FINISHED"]
    parts = []
    for key in blocks(sweep, axis):
        n = frame[key].nunique() if key in frame else 0
        plural = "s" * (n != 1)
        parts.append(f"{n} {key}{plural}" if key in ("prompt", "seed", "sweep") else f"{n} value{plural} of {key}")
    return " × ".join(parts) or "one trial per level"


def outcome(row: pd.Series) -> str:
    """How level_a fares against level_b in the metric's better direction: `better`, `worse`, `same`, or
    `differs` (significant, but which way is better is unknown). The verdict alone says only which is higher, and
    for a lower-is-better metric such as `gt_colour_error` higher is worse."""
    if row["verdict"] == "same":
        return "same"
    if row["direction"] not in ("max", "min"):
        return "differs"
    return "better" if (row["verdict"] == "a>b") == (row["direction"] == "max") else "worse"


def _better(row: pd.Series) -> tuple[str, str] | None:
    """(winner, loser) of a row whose better level is known; None otherwise."""
    found = outcome(row)
    if found == "better":
        return row["level_a"], row["level_b"]
    return (row["level_b"], row["level_a"]) if found == "worse" else None


def best_level(family: pd.DataFrame, order: list) -> object | None:
    """The level that beats every other level of the family, if one does."""
    wins: dict[object, int] = {}
    for _, row in family.iterrows():
        result = _better(row)
        if result is not None:
            wins[result[0]] = wins.get(result[0], 0) + 1
    return next((level for level in order if wins.get(level, 0) == len(order) - 1 and len(order) > 1), None)


def _difference(row: pd.Series, how: str) -> str:
    """A significant row in words; its interval never crosses 0, so it reads as a magnitude."""
    low, high = sorted((abs(row["ci_low"]), abs(row["ci_high"])))
    size = _number(abs(row["delta"]))
    result = _better(row)
    if result is not None:
        lower = " (lower is better)" if row["direction"] == "min" else ""
        claim = f"**{result[0]}** beats {result[1]} on {row['metric']}{lower} by {size}"
    else:
        word = "higher" if row["verdict"] == "a>b" else "lower"
        claim = f"**{row['level_a']}** has {word} {row['metric']} than {row['level_b']} by {size}"
    return (
        f"{claim} (95% CI {_number(low)} to {_number(high)}, Holm-adjusted p = {row['p_adj']:.3g}, paired over {how})"
    )


def family_sentence(sweep: Sweep, family: pd.DataFrame) -> str:
    axis, metric = family["axis"].iloc[0], family["metric"].iloc[0]
    order = list(dict.fromkeys([*family["level_a"], *family["level_b"]]))
    how = pairing(sweep, axis)
    best = best_level(family, order)
    if best is not None:
        return f"**{best}** is the best {axis} on {metric}: it beats each other level at 95% (Holm), paired over {how}."
    passed = family[family["verdict"] != "same"]
    if len(passed):
        listed = [_difference(row, how) for _, row in passed.head(MAX_LISTED).iterrows()]
        more = f"; and {len(passed) - MAX_LISTED} more in comparisons.csv" if len(passed) > MAX_LISTED else ""
        return f"{axis}: " + "; ".join(listed) + more + ". No level beats all others."
    need = _seeds_range(family["seeds_needed"].dropna())
    power = f"; 80% power at the observed differences would take {need} seeds" if need else ""
    detectable = _detectable(family["detectable"], "difference")
    return (
        f"No difference detected between levels of {axis} on {metric} at 95% ({_holm(family)}, "
        f"paired over {how}{detectable}{power})."
    )


def trend_sentences(sweep: Sweep, trends: pd.DataFrame) -> list[str]:
    lines = []
    for _, row in trends.iterrows():
        unit = "per decade of" if row["scale"] == "log10" else "per unit of"
        ci = f"95% CI {_number(row['ci_low'])} to {_number(row['ci_high'])}, Holm-adjusted p = {row['p_adj']:.3g}"
        ci += f" ({_holm(pd.DataFrame([row]))})"
        how = f"slopes over {pairing(sweep, row['axis'])}"
        if row["verdict"] == "flat":
            detectable = _detectable(pd.Series([row["detectable"]]), "slope", f" {unit} {row['axis']}")
            lines.append(f"No trend detected in {row['metric']} along {row['axis']} at 95% ({ci}; {how}{detectable}).")
        else:
            slope = _number(row["slope"])
            lines.append(f"{row['metric']} **{row['verdict']}** with {row['axis']}: {slope} {unit} it ({ci}; {how}).")
    return lines


def headline(sweep: Sweep, comparisons: pd.DataFrame, trends: pd.DataFrame) -> list[str]:
    """One sentence per compared axis and metric (the axes the sweep asks about; prompt only when it is the only
    one), then the trends; never a 'best' the verdicts do not support."""
    if comparisons.empty:
        return [_no_comparison(sweep)]
    asked = [a for a in axes_to_compare(sweep) if a != "prompt"] or axes_to_compare(sweep)
    asked += ["sweep"] if len(sweep.sources) > 1 else []
    lines = []
    for (axis, _metric), family in comparisons.groupby(["axis", "metric"], sort=False):
        if axis in asked:
            lines.append(family_sentence(sweep, family.reset_index(drop=True)))
    lines += trend_sentences(sweep, trends[trends["axis"].isin(asked)] if len(trends) else trends)
    return [*lines, family_line(comparisons, trends)]


def _no_comparison(sweep: Sweep) -> str:
    """Why there is no comparison. "Yet" promises trials to come, which is wrong of a sweep whose trials all failed."""
    trials = sweep.trials
    if len(trials) and (trials["status"] == "FAILED").all():
        return f"Nothing to compare: all {len(trials)} trial runs failed."
    return f"No comparison yet: no two levels share paired, finished trials that logged {sweep.metric}."


def _family(axis: str, comparisons: pd.DataFrame, trends: pd.DataFrame) -> str:
    """`guidance, 8 tests (3 pairs of levels × 2 metrics, and 2 trends)`."""
    rows, slopes = comparisons[comparisons["axis"] == axis], int((trends["axis"] == axis).sum())
    pairs, metrics = len(rows[["level_a", "level_b"]].drop_duplicates()), rows["metric"].nunique()
    held = [f"{_plural(pairs, 'pair')} of levels × {_plural(metrics, 'metric')}"] if len(rows) else []
    held += [_plural(slopes, "trend")] if slopes else []
    return f"{axis}, {_plural(len(rows) + slopes, 'test')} ({', and '.join(held)})"


def family_line(comparisons: pd.DataFrame, trends: pd.DataFrame) -> str:
    """Which multiple-comparison family each axis's tests were corrected in, and what it holds."""
    metrics = ", ".join(dict.fromkeys([*comparisons["metric"], *trends["metric"]]))
    axes = dict.fromkeys([*comparisons["axis"], *trends["axis"]])
    parts = [_family(axis, comparisons, trends) for axis in axes]
    return (
        f"Multiple comparisons: one Holm family per axis, across every metric the report concludes on ({metrics}): "
        f"{'; '.join(parts)}."
    )
