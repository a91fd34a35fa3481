"""Paired comparisons on synthetic sweeps with known effects: exact deltas when pairing removes everything else,
the verdicts a known effect must get, few false positives when nothing differs, and the promised power at the
number of seeds `seeds_needed` names."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_sweeps import colour_error_sweep, noisy, sweep

from analysis import stats
from analysis.load import varied_frame
from analysis.paired import adjusted, blocks, comparisons, pair_tests, trends
from analysis.verdicts import family_line

PROMPTS = ["a red cube", "a green torus", "a blue cone"]
SCHEDULES = ["uniform", "anneal", "stratified"]


def test_pairing_removes_prompt_and_seed_effects_exactly():
    """metric = large prompt and seed offsets + 0.1 for anneal: the paired delta is exactly -0.1 with zero spread,
    a point interval, and the smallest p the 12 pairs allow."""
    prompt_effect = {"a red cube": 0.0, "a green torus": 5.0, "a blue cone": -3.0}
    s = sweep(
        {"schedule": ["uniform", "anneal"], "prompt": PROMPTS, "seed": [0, 1, 2, 3]},
        lambda c: prompt_effect[c["prompt"]] + 0.7 * c["seed"] + (0.1 if c["schedule"] == "anneal" else 0.0),
    )
    table = comparisons(s)
    row = table[table["axis"] == "schedule"].iloc[0]
    assert (row["level_a"], row["level_b"]) == ("uniform", "anneal")  # the spec's order
    assert row["delta"] == pytest.approx(-0.1)
    assert row["ci_low"] == pytest.approx(-0.1) and row["ci_high"] == pytest.approx(-0.1)
    assert row["p"] == pytest.approx(2 / 2**12) and row["p_adj"] == row["p"]  # one pair of levels: no adjustment
    assert row["verdict"] == "a<b" and row["n"] == 12
    assert set(table["axis"]) == {"schedule", "prompt"}  # the seed is a replicate, never an axis


def test_a_known_effect_gets_its_verdicts_and_the_interval_covers_it():
    rng = np.random.default_rng(0)
    value = noisy(rng, {"schedule": {"stratified": 0.05}}, sd=0.01)
    s = sweep({"schedule": SCHEDULES, "prompt": PROMPTS, "seed": [0, 1, 2, 3]}, value)
    table = comparisons(s).set_index(["axis", "level_a", "level_b"]).loc["schedule"]
    assert table.loc[("uniform", "stratified"), "verdict"] == "a<b"
    assert table.loc[("anneal", "stratified"), "verdict"] == "a<b"
    assert table.loc[("uniform", "anneal"), "verdict"] == "same"
    row = table.loc[("uniform", "stratified")]
    assert row["ci_low"] <= -0.05 <= row["ci_high"]
    # Holm: three pairs of levels, adjusted p is at least the raw one and the rule holds row by row
    assert (table["p_adj"] >= table["p"]).all()
    for _, r in table.iterrows():
        assert r["verdict"] == stats.verdict(r["p_adj"], r["ci_low"], r["ci_high"])


def test_few_false_positives_when_nothing_differs():
    """200 sweeps, 4 schedules × 3 prompts × 3 seeds, no schedule effect: the share of sweeps with any verdict
    other than `same` (the family-wise error Holm controls at 5%) stays within sampling error of 5% or below."""
    rng = np.random.default_rng(1)
    space = {"schedule": ["a", "b", "c", "d"], "prompt": PROMPTS, "seed": [0, 1, 2]}
    wrong = 0
    for _ in range(200):
        s = sweep(space, noisy(rng, {}, sd=0.02))
        rows = adjusted(pair_tests(varied_frame(s), "schedule", space["schedule"], s.metric, blocks(s, "schedule")))
        wrong += any(r["verdict"] != "same" for r in rows)
    assert wrong / 200 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)


def test_seeds_needed_gives_the_promised_power():
    """A pilot sweep with a true d_z of 0.5 and two prompts per seed asks for about 34 / 2 seeds; at that many,
    about 80% of samples with that effect must pass the sign-flip test."""
    rng = np.random.default_rng(2)
    space = {"schedule": ["a", "b"], "prompt": PROMPTS[:2], "seed": list(range(100))}
    # no block noise: each trial N(effect, 1), so a pair difference is N(0.5·√2, √2), d_z = 0.5
    pilot = sweep(space, noisy(rng, {"schedule": {"b": 0.5 * math.sqrt(2)}}, 1.0, 0.0))
    needed = int(comparisons(pilot).query("axis == 'schedule'")["seeds_needed"].iloc[0])
    assert abs(needed - stats.pairs_needed(0.5, 0.05) / 2) <= 4  # the pilot's d_z is an estimate
    found = [stats.permutation_p(rng.normal(0.5, 1.0, 2 * needed)) < 0.05 for _ in range(300)]
    assert 0.7 <= np.mean(found) <= 0.93


def test_lower_is_better_metrics_keep_the_value_convention():
    """delta and the verdict are about the values; `direction` says which way is better."""
    s = colour_error_sweep()
    row = comparisons(s).query("axis == 'schedule'").iloc[0]
    assert row["delta"] == pytest.approx(0.1) and row["verdict"] == "a>b" and row["direction"] == "min"


def test_too_few_pairs_give_an_unbounded_interval_and_no_verdict():
    s = sweep({"schedule": ["uniform", "anneal"], "prompt": PROMPTS[:2]}, lambda c: float(c["schedule"] == "anneal"))
    row = comparisons(s).query("axis == 'schedule'").iloc[0]
    assert row["p"] == pytest.approx(0.5)  # 2 pairs: 2/4 at best
    assert row["ci_low"] == -math.inf and row["ci_high"] == math.inf and row["verdict"] == "same"


def test_a_rising_metric_along_a_ladder_is_a_rising_trend():
    rng = np.random.default_rng(3)
    scales = [1, 5, 10, 20, 50, 100]

    def value(c):
        return 0.1 + 0.05 * math.log10(c["guidance"]) + 0.01 * PROMPTS.index(c["prompt"]) + rng.normal(0, 0.005)

    # six seeds: the trend shares guidance's Holm family with its 15 pairs of levels, where 9 blocks (2/2^9 × 16)
    # could not pass
    seeds = list(range(6))
    s = sweep({"guidance": scales, "prompt": PROMPTS, "seed": seeds}, value, metric="gt_colour_error", mode="min")
    row = trends(s).iloc[0]
    assert (row["axis"], row["scale"], row["verdict"]) == ("guidance", "log10", "rises")
    assert row["ci_low"] <= 0.05 <= row["ci_high"] and row["n"] == 18 and row["family_size"] == 16
    flat = sweep({"guidance": scales, "prompt": PROMPTS, "seed": [0, 1]}, lambda c: rng.normal(0, 0.01))
    assert trends(flat).iloc[0]["verdict"] == "flat"


def test_comparisons_and_trends_of_an_axis_are_one_holm_family_across_metrics():
    """A 3-level guidance ladder on two metrics: its 3 pairs × 2 metrics and its 2 trends are one family of 8, and
    each row's p_adj is statsmodels' Holm over exactly those 8 raw p-values, in both tables alike."""
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(7)
    space = {"guidance": [5.0, 20.0, 100.0], "prompt": PROMPTS, "seed": [0, 1, 2]}
    s = sweep(space, noisy(rng, {"guidance": {100.0: 0.02}}, 0.01))
    s.trials["gt_iou"] = rng.normal(0.5, 0.01, len(s.trials))
    pairs, slopes = comparisons(s).query("axis == 'guidance'"), trends(s).query("axis == 'guidance'")
    assert len(pairs) == 6 and len(slopes) == 2
    assert set(pairs["family_size"]) == set(slopes["family_size"]) == {8}
    raw = [*pairs["p"], *slopes["p"]]
    expected = multipletests(raw, alpha=0.05, method="holm")[1]
    assert [*pairs["p_adj"], *slopes["p_adj"]] == pytest.approx(list(expected))
    prompt = comparisons(s).query("axis == 'prompt'")  # another axis: its own family
    assert set(prompt["family_size"]) == {6}
    assert family_line(comparisons(s), trends(s)).endswith(
        "guidance, 8 tests (3 pairs of levels × 2 metrics, and 2 trends); "
        "prompt, 6 tests (3 pairs of levels × 2 metrics)."
    )
