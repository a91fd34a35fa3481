"""Readings of SDS's failure modes over a sweep, from the trials' exact toy-world metrics: the colour diversity of
colour-unspecified prompts across seeds (mode collapse), the Janus rate, the slope of colour error against guidance
(over-saturation) and the rate at which the torus keeps its hole (over-smoothing).

What the world is (its colours, which captions leave the colour open) comes from the runs, as the toy world's
evaluators log and declare it, never from a copy here: the tables follow the world when it changes."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: The colour a trial's object became, an index into the colours its runs record as the metric's levels; and 1 when
#: its prompt left that colour to SDS (the trials whose choices measure diversity).
COLOUR_CHOICE = "gt_colour_index"
COLOUR_OPEN = "gt_colour_open"


def entropy_bits(choices: Iterable[float]) -> float:
    """Plug-in entropy, in bits, of the empirical distribution of the categories in `choices`.

    0 when every trial chose the same colour (mode collapse); log2(k) for k colours equally. With n trials it
    cannot exceed log2(n), and its expectation under the uniform law sits below log2(k) (by about (k − 1)/(2n ln 2)
    bits): compare sweeps at equal n.
    """
    values = pd.Series(list(choices)).dropna()
    if values.empty:
        return math.nan
    p = values.value_counts(normalize=True).to_numpy()
    return float(-(p * np.log2(p)).sum())


def diversity_table(trials: pd.DataFrame, varied: list[str], colours: list[str]) -> pd.DataFrame:
    """Colour entropy across seeds (and prompts) of the colour-unspecified trials, per setting of the other varied
    parameters: columns `<params>`, `trials`, `colour_entropy_bits`, `counts` (trials per colour, in the order of
    `colours`, the levels the runs record for the colour choice). Empty where the runs do not record which prompts
    left the colour open, or the colours (runs logged before they did): better no table than one from a guess."""
    if COLOUR_CHOICE not in trials or COLOUR_OPEN not in trials or not colours:
        return pd.DataFrame()
    rows = trials[(trials[COLOUR_OPEN] == 1) & trials[COLOUR_CHOICE].notna()]
    if rows.empty:
        return pd.DataFrame()
    keys = [f"param:{k}" for k in varied if k not in ("seed", "prompt") and f"param:{k}" in rows]
    groups = rows.groupby(keys, dropna=False) if keys else [((), rows)]
    out = []
    for key, group in groups:
        counts = group[COLOUR_CHOICE].astype(int).value_counts().reindex(range(len(colours)), fill_value=0)
        setting = dict(zip([k.removeprefix("param:") for k in keys], key if isinstance(key, tuple) else (key,)))
        out.append(
            {
                **setting,
                "trials": len(group),
                "colour_entropy_bits": entropy_bits(group[COLOUR_CHOICE]),
                "counts": " ".join(str(int(c)) for c in counts),
            }
        )
    return pd.DataFrame(out)


def rate(flags: Iterable[float]) -> float:
    """Share of trials where a 0/1 reading is 1 (nan without trials)."""
    values = pd.Series(list(flags), dtype=float).dropna()
    return float(values.mean()) if len(values) else math.nan


def slope(x: Iterable[float], y: Iterable[float]) -> float:
    """Least-squares slope of y on x."""
    xs, ys = np.asarray(list(x), dtype=float), np.asarray(list(y), dtype=float)
    keep = np.isfinite(xs) & np.isfinite(ys)
    xs, ys = xs[keep], ys[keep]
    if len(xs) < 2 or np.ptp(xs) == 0:
        return math.nan
    return float(np.polyfit(xs, ys, 1)[0])
