"""Readings of SDS's failure modes over a sweep, from the trials' exact toy-world metrics: the colour diversity of
colour-unspecified prompts across seeds (mode collapse), the Janus rate, the slope of colour error against guidance
(over-saturation) and the rate at which the torus keeps its hole (over-smoothing)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Categories a colour-unspecified prompt can become: the toy world's six colours.
COLOURS = 6


def entropy_bits(choices: Iterable[float]) -> float:
    """Plug-in entropy, in bits, of the empirical distribution of the categories in `choices`.

    0 when every trial chose the same colour (mode collapse); log2(6) = 2.585 for six colours equally. With n
    trials it cannot exceed log2(n), and its expectation under the uniform law sits below log2(6) (by about
    5/(2n ln 2) bits): compare sweeps at equal n.
    """
    values = pd.Series(list(choices)).dropna()
    if values.empty:
        return math.nan
    p = values.value_counts(normalize=True).to_numpy()
    return float(-(p * np.log2(p)).sum())


def is_colour_unspecified(prompt: str) -> bool:
    """'a coloured cube' (with or without a view suffix): the prompts whose colour is left to SDS."""
    words = prompt.lower().split()
    return len(words) >= 2 and words[1] == "coloured"


def diversity_table(trials: pd.DataFrame, varied: list[str]) -> pd.DataFrame:
    """Colour entropy across seeds (and prompts) of the colour-unspecified trials, per setting of the other varied
    parameters: columns `<params>`, `trials`, `colour_entropy_bits`, `counts` (trials per colour, world order)."""
    if "gt_colour_index" not in trials or "param:prompt" not in trials:
        return pd.DataFrame()
    rows = trials[trials["param:prompt"].map(is_colour_unspecified) & trials["gt_colour_index"].notna()]
    if rows.empty:
        return pd.DataFrame()
    keys = [f"param:{k}" for k in varied if k not in ("seed", "prompt") and f"param:{k}" in rows]
    groups = rows.groupby(keys, dropna=False) if keys else [((), rows)]
    out = []
    for key, group in groups:
        counts = group["gt_colour_index"].astype(int).value_counts().reindex(range(COLOURS), fill_value=0)
        setting = dict(zip([k.removeprefix("param:") for k in keys], key if isinstance(key, tuple) else (key,)))
        out.append(
            {
                **setting,
                "trials": len(group),
                "colour_entropy_bits": entropy_bits(group["gt_colour_index"]),
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
