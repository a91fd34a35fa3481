"""Synthetic sweeps with known effects, as `analysis.load` would hand them over (no MLflow: the frames only)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd

from analysis.load import Source, Sweep


def sweep(
    space: dict[str, list],
    value: Callable[[dict], float],
    metric: str = "clip_score",
    mode: str = "max",
    label: str = "synthetic",
    extra: dict[str, object] | None = None,
) -> Sweep:
    """A finished full-grid sweep over `space`; each trial's metric is `value(config)`."""
    spec = {
        "name": label,
        "space": {k: {"grid": v} for k, v in space.items()},
        "tune": {"metric": metric, "mode": mode},
    }
    rows = []
    for i, combo in enumerate(itertools.product(*space.values())):
        config = dict(zip(space, combo))
        rows.append(
            {
                "run_id": f"{label}-{i}",
                "run_name": ",".join(f"{k}={v}" for k, v in config.items()),
                "sweep": label,
                "status": "FINISHED",
                "compute_s": 1.0,
                **{f"param:{k}": v for k, v in {**(extra or {}), **config}.items()},
                metric: value(config),
            }
        )
    return Sweep(
        label,
        "sqlite:///unused.db",
        pd.DataFrame(rows),
        pd.DataFrame(),
        list(space),
        [Source(label, "0", [], spec)],
        metric,
        mode,
    )


def combine(*sweeps: Sweep) -> Sweep:
    """Several synthetic sweeps as `load_sweeps` returns them: one frame, one source each."""
    trials = pd.concat([s.trials for s in sweeps], ignore_index=True)
    varied = list(dict.fromkeys(k for s in sweeps for k in s.varied))
    first = sweeps[0]
    return Sweep(
        " vs ".join(s.name for s in sweeps),
        first.tracking_uri,
        trials,
        pd.DataFrame(),
        varied,
        [src for s in sweeps for src in s.sources],
        first.metric,
        first.mode,
    )


def noisy(
    rng: np.random.Generator, effects: dict[str, dict], sd: float, block_sd: float = 0.3
) -> Callable[[dict], float]:
    """metric = Σ effects[key][config value] + a random effect per (prompt, seed) block + N(0, sd) noise."""
    blocks: dict[tuple, float] = {}

    def value(config: dict) -> float:
        block = (config.get("prompt"), config.get("seed"))
        blocks.setdefault(block, float(rng.normal(0, block_sd)))
        fixed = sum(table.get(config.get(key), 0.0) for key, table in effects.items())
        return fixed + blocks[block] + float(rng.normal(0, sd))

    return value


def colour_error_sweep() -> Sweep:
    """A lower-is-better metric where anneal (0.2) beats uniform (0.3) on every prompt and seed."""
    return sweep(
        {
            "schedule": ["uniform", "anneal"],
            "prompt": ["a red cube", "a green torus", "a blue cone"],
            "seed": [0, 1, 2],
        },
        lambda c: (0.3 if c["schedule"] == "uniform" else 0.2) + 0.01 * c["seed"],
        metric="gt_colour_error",
        mode="min",
    )
