"""What mattered (variance shares by hand), what differs between sweeps, and a headline that names a best level
only when the verdicts support it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from synthetic_sweeps import colour_error_sweep, combine, noisy, sweep

from analysis.compare import levels
from analysis.differences import differences
from analysis.importance import importance
from analysis.load import varied_frame
from analysis.paired import comparisons, trends
from analysis.verdicts import headline, outcome

PROMPTS = ["a red cube", "a green torus", "a blue cone"]


def test_importance_is_each_keys_share_of_the_variance_by_hand():
    """Additive 2 × 3 grid, no noise: metric = a-effect + b-effect. Sums of squares by hand: a's levels ±1 over
    3 trials each (SS 6), b's levels 0, 0, 3 over 2 trials each (means -1, -1, 2 → SS 2·(1 + 1 + 4) = 12); total 18."""
    s = sweep(
        {"a": ["lo", "hi"], "b": ["x", "y", "z"]}, lambda c: {"lo": -1, "hi": 1}[c["a"]] + (3 if c["b"] == "z" else 0)
    )
    table = importance(s).set_index("param")["importance"]
    assert table["b"] == pytest.approx(12 / 18)
    assert table["a"] == pytest.approx(6 / 18)
    assert list(table.index) == ["b", "a"]  # most important first


def test_importance_of_a_key_drawn_per_trial_uses_bins():
    rng = np.random.default_rng(0)
    s = sweep({"seed": list(range(40))}, lambda c: 0.0)
    lr = rng.uniform(0, 1, len(s.trials))
    s.trials["param:lr"] = lr
    s.trials["clip_score"] = lr + rng.normal(0, 0.05, len(lr))
    s.varied.append("lr")
    s.continuous.add("lr")
    table = importance(s).set_index("param")["importance"]
    assert 0.8 < table["lr"] < 1.0  # five quantile bins of a linear effect: most of the variance, not all
    assert table["seed"] == pytest.approx(1.0)  # one trial per seed: the seed "explains" everything (the bias note)


def test_levels_follow_the_spec_then_sorted():
    s = sweep({"schedule": ["uniform", "anneal", "dreamtime"], "prompt": PROMPTS}, lambda c: 0.0)
    assert levels(s, "schedule") == ["uniform", "anneal", "dreamtime"]
    assert levels(s, "prompt") == PROMPTS


def two_sweeps(version_b: str = "1"):
    base = {"schedule": ["uniform", "anneal"], "prompt": PROMPTS, "seed": [0, 1]}
    a = sweep(base, lambda c: 0.5 + 0.01 * c["seed"], label="baseline", extra={"steps": 400})
    b = sweep(base, lambda c: 0.6 + 0.01 * c["seed"], label="this-week", extra={"steps": 200})
    a.trials["component:schedule"] = a.trials["param:schedule"] + "@1"
    b.trials["component:schedule"] = b.trials["param:schedule"].map(
        {"uniform": "uniform@1", "anneal": f"anneal@{version_b}"}
    )
    a.sources[0].spec["tune"]["max_concurrent_trials"] = 2
    return combine(a, b)


def test_settings_that_differ_between_sweeps():
    table = differences(two_sweeps(version_b="2"))
    rows = {(r["kind"], r["setting"]): (r["baseline"], r["this-week"]) for _, r in table.iterrows()}
    assert rows[("config", "steps")] == ("400", "200")
    assert rows[("component version", "schedule anneal")] == ("anneal@1", "anneal@2")
    assert rows[("spec", "tune.max_concurrent_trials")] == ("2", "—")
    assert ("component version", "schedule uniform") not in rows  # same version in both
    assert ("config", "schedule") not in rows  # same levels in both
    assert table.iloc[0]["kind"] == "component version"  # said first: the same name, another algorithm


def test_sweeps_are_compared_on_the_configs_they_share():
    s = two_sweeps()
    table = comparisons(s)
    row = table[table["axis"] == "sweep"].iloc[0]
    assert (row["level_a"], row["level_b"]) == ("baseline", "this-week")
    assert row["delta"] == pytest.approx(-0.1) and row["n"] == 12 and row["verdict"] == "a<b"
    # within-sweep axes pair inside each sweep: the 0.1 between the sweeps does not leak into schedule
    schedule = table[table["axis"] == "schedule"].iloc[0]
    assert schedule["delta"] == pytest.approx(0.0, abs=1e-12) and schedule["verdict"] == "same"


def test_headline_names_no_best_when_nothing_differs():
    rng = np.random.default_rng(4)
    s = sweep({"schedule": ["uniform", "anneal", "dreamtime"], "prompt": PROMPTS, "seed": [0, 1]}, noisy(rng, {}, 0.01))
    lines = headline(s, comparisons(s), trends(s))
    assert len(lines) == 2 and lines[0].startswith("No difference detected between levels of schedule on clip_score")
    assert "paired over 3 prompts × 2 seeds" in lines[0] and "best" not in lines[0]
    assert "with so few pairs no difference could reach 95% whatever its size" in lines[0]  # 6 pairs, level 0.05/3


def test_a_null_says_no_difference_detected_and_the_smallest_the_design_detects():
    """12 pairs, no effect: the sentence names the minimum detectable difference at 80% power, computed here from
    the pairs' own spread with the t quantiles, and says which Holm family the test was in."""
    rng = np.random.default_rng(6)
    s = sweep({"schedule": ["uniform", "anneal"], "prompt": PROMPTS, "seed": [0, 1, 2, 3]}, noisy(rng, {}, 0.01))
    frame = varied_frame(s).set_index(["prompt", "seed", "schedule"])["clip_score"].unstack("schedule")
    diffs = (frame["uniform"] - frame["anneal"]).to_numpy()
    smallest = (scipy.stats.t.ppf(0.975, 11) + scipy.stats.t.ppf(0.8, 11)) * diffs.std(ddof=1) / math.sqrt(12)
    table = comparisons(s)
    assert table.query("axis == 'schedule'")["detectable"].iloc[0] == pytest.approx(smallest)
    lines = headline(s, table, trends(s))
    assert lines[0].startswith(
        "No difference detected between levels of schedule on clip_score at 95% (Holm over the 1 test on schedule, "
        "paired over 3 prompts × 4 seeds; "
        f"the design detects a difference of {smallest:.3g} or more with 80% power"
    )
    assert lines[-1] == (
        "Multiple comparisons: one Holm family per axis, across every metric the report concludes on (clip_score): "
        "schedule, 1 test (1 pair of levels × 1 metric); prompt, 3 tests (3 pairs of levels × 1 metric)."
    )


def test_headline_names_the_best_only_when_it_beats_every_other_level():
    rng = np.random.default_rng(5)
    space = {"schedule": ["uniform", "anneal", "stratified"], "prompt": PROMPTS, "seed": [0, 1, 2]}
    dominant = sweep(space, noisy(rng, {"schedule": {"stratified": 0.1}}, 0.005))
    assert headline(dominant, comparisons(dominant), trends(dominant))[0].startswith(
        "**stratified** is the best schedule on clip_score"
    )
    # stratified beats uniform only: a difference, but no best
    partial = sweep(space, noisy(rng, {"schedule": {"stratified": 0.1, "anneal": 0.1}}, 0.005))
    line = headline(partial, comparisons(partial), trends(partial))[0]
    assert "best" not in line.split(".")[0] and "No level beats all others" in line
    assert "Holm-adjusted p" in line and "95% CI" in line


def test_headline_for_lower_is_better_says_who_wins():
    s = colour_error_sweep()
    assert headline(s, comparisons(s), trends(s))[0].startswith("**anneal** is the best schedule on gt_colour_error")


def test_the_figures_colour_a_lower_error_as_better_though_it_is_the_lower_value():
    s = colour_error_sweep()
    row = comparisons(s).query("metric == 'gt_colour_error'").iloc[0]
    anneal_first = row["level_a"] == "anneal"
    assert row["verdict"] == ("a<b" if anneal_first else "a>b")
    assert outcome(row) == ("better" if anneal_first else "worse")
    assert outcome(row.copy().replace({"min": None})) == "differs"
    assert outcome(row.copy().replace({row["verdict"]: "same"})) == "same"


def test_headline_without_any_comparison():
    s = sweep({"schedule": ["uniform"]}, lambda c: 0.5)
    empty = pd.DataFrame(columns=comparisons(s).columns)
    assert headline(s, empty, trends(s))[0].startswith("No comparison yet")
