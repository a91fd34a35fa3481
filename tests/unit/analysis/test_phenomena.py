"""Sweep-level readings of the failure modes, against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.phenomena import diversity_table, entropy_bits, rate, slope

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]  # as a run records the choice's levels


def test_entropy_bits_by_hand():
    assert entropy_bits([0, 1, 2, 3, 4, 5]) == pytest.approx(math.log2(6))
    assert entropy_bits([3, 3, 3, 3]) == 0.0
    assert entropy_bits([0, 0, 1, 1]) == pytest.approx(1.0)
    assert entropy_bits([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert math.isnan(entropy_bits([]))


TRIALS = pd.DataFrame(
    {
        "param:prompt": ["a coloured cube", "a coloured cone", "a coloured cube", "a coloured cone", "a red cube"],
        "param:seed": [0, 1, 0, 1, 0],
        "param:sds.guidance_scale": [5, 5, 50, 50, 5],
        "gt_colour_index": [0.0, 2.0, 4.0, 4.0, 0.0],
        "gt_colour_open": [1.0, 1.0, 1.0, 1.0, 0.0],
    }
)


def test_diversity_is_per_setting_over_seeds_and_prompts():
    table = diversity_table(TRIALS, ["prompt", "seed", "sds.guidance_scale"], COLOURS)
    assert table.to_dict("records") == [
        {"sds.guidance_scale": 5, "trials": 2, "colour_entropy_bits": 1.0, "counts": "1 0 1 0 0 0"},
        {"sds.guidance_scale": 50, "trials": 2, "colour_entropy_bits": 0.0, "counts": "0 0 0 0 2 0"},
    ]
    assert diversity_table(TRIALS.drop(columns="gt_colour_index"), ["prompt"], COLOURS).empty


def test_diversity_counts_what_the_runs_record_not_the_prompts():
    """Which trials left the colour open, and how many colours there are, come from the runs: not a caption
    grammar or a colour list of analysis's own. Runs that do not record them (older ones) give no table."""
    renamed = TRIALS.assign(**{"param:prompt": ["x", "y", "x", "y", "z"]})
    assert diversity_table(renamed, ["prompt", "sds.guidance_scale"], COLOURS).equals(
        diversity_table(TRIALS, ["prompt", "sds.guidance_scale"], COLOURS)
    )
    eight = diversity_table(TRIALS, ["prompt", "sds.guidance_scale"], [*COLOURS, "white", "black"])
    assert eight["counts"].tolist() == ["1 0 1 0 0 0 0 0", "0 0 0 0 2 0 0 0"]
    assert diversity_table(TRIALS.drop(columns="gt_colour_open"), ["prompt"], COLOURS).empty
    assert diversity_table(TRIALS, ["prompt"], []).empty


def test_rate_and_slope():
    assert rate([1.0, 0.0, 1.0, float("nan")]) == pytest.approx(2 / 3)
    assert slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    assert math.isnan(slope([1, 1], [0, 1]))
