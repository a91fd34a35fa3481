"""Sweep-level readings of the failure modes, against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from analysis.phenomena import diversity_table, entropy_bits, is_colour_unspecified, rate, slope


def test_entropy_bits_by_hand():
    assert entropy_bits([0, 1, 2, 3, 4, 5]) == pytest.approx(math.log2(6))
    assert entropy_bits([3, 3, 3, 3]) == 0.0
    assert entropy_bits([0, 0, 1, 1]) == pytest.approx(1.0)
    assert entropy_bits([0, 0, 0, 1]) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert math.isnan(entropy_bits([]))


def test_diversity_is_per_setting_over_seeds_and_prompts():
    trials = pd.DataFrame(
        {
            "param:prompt": ["a coloured cube", "a coloured cone", "a coloured cube", "a coloured cone", "a red cube"],
            "param:seed": [0, 1, 0, 1, 0],
            "param:sds.guidance_scale": [5, 5, 50, 50, 5],
            "gt_colour_index": [0.0, 2.0, 4.0, 4.0, 0.0],
        }
    )
    table = diversity_table(trials, ["prompt", "seed", "sds.guidance_scale"])
    assert table.to_dict("records") == [
        {"sds.guidance_scale": 5, "trials": 2, "colour_entropy_bits": 1.0, "counts": "1 0 1 0 0 0"},
        {"sds.guidance_scale": 50, "trials": 2, "colour_entropy_bits": 0.0, "counts": "0 0 0 0 2 0"},
    ]
    assert diversity_table(trials.drop(columns="gt_colour_index"), ["prompt"]).empty


def test_colour_unspecified_prompts():
    assert is_colour_unspecified("a coloured cube") and is_colour_unspecified("a coloured cube, back view")
    assert not is_colour_unspecified("a red cube") and not is_colour_unspecified("a cube")


def test_rate_and_slope():
    assert rate([1.0, 0.0, 1.0, float("nan")]) == pytest.approx(2 / 3)
    assert slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    assert math.isnan(slope([1, 1], [0, 1]))
