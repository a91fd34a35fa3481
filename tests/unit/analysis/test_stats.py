"""The statistics behind a verdict, against values computed independently: every sign pattern enumerated with itertools
and scipy's permutation test, Holm's step-down by hand and by statsmodels, the power of the paired t-test from
published sample sizes, and the interval checked by testing shifted samples with the independent test."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.stats

from analysis import stats


def enumerated_p(d: np.ndarray, shift: float = 0.0) -> float:
    """Two-sided sign-flip p-value of mean(d − shift) = 0, by listing all 2^n sign patterns (independent code)."""
    x = [v - shift for v in d]
    observed = abs(sum(x))
    hits = sum(
        abs(sum(s * v for s, v in zip(signs, x))) >= observed - 1e-12
        for signs in itertools.product((1, -1), repeat=len(x))
    )
    return hits / 2 ** len(x)


@pytest.mark.parametrize("n", [2, 3, 5, 6, 8, 10])
def test_p_value_equals_full_enumeration(n):
    rng = np.random.default_rng(n)
    for _ in range(5):
        d = rng.normal(0.3, 1.0, n)
        assert stats.permutation_p(d) == pytest.approx(enumerated_p(d), abs=1e-12)


def test_p_value_of_known_samples():
    # all six differences positive: only the identity and its mirror reach |sum| -> 2/64
    assert stats.permutation_p(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])) == pytest.approx(2 / 64)
    # no difference at all: every pattern ties -> 1
    assert stats.permutation_p(np.zeros(4)) == 1.0
    # [1, 1, 1, -1]: |sum| = 2; patterns with |sum| >= 2: those with 0, 1, 3 or 4 flips of the +1s … counted by hand
    # sums over the 16 patterns: ±4 (2 of them), ±2 (8), 0 (6) -> 10/16
    assert stats.permutation_p(np.array([1.0, 1.0, 1.0, -1.0])) == pytest.approx(10 / 16)


@pytest.mark.parametrize("n, alpha", [(4, 0.2), (6, 0.05), (7, 0.01), (9, 0.05), (12, 0.025)])
def test_interval_is_the_set_of_shifts_the_test_does_not_reject(n, alpha):
    """Just inside each end the independent test gives p > alpha, just outside p <= alpha."""
    rng = np.random.default_rng(100 + n)
    for _ in range(3):
        d = rng.normal(0.5, 1.0, n)
        low, high = stats.permutation_ci(d, alpha)
        assert low <= d.mean() <= high
        eps = 1e-7 * (1 + abs(low) + abs(high))
        if math.isfinite(low):
            assert enumerated_p(d, low + eps) > alpha >= enumerated_p(d, low - eps)
        if math.isfinite(high):
            assert enumerated_p(d, high - eps) > alpha >= enumerated_p(d, high + eps)


def test_interval_and_test_never_disagree():
    """0 lies outside the 1 − alpha interval exactly when p <= alpha, for any sample."""
    rng = np.random.default_rng(7)
    agreements = []
    for _ in range(300):
        n = int(rng.integers(3, 12))
        d = rng.normal(rng.normal(0, 0.7), 1.0, n)
        alpha = float(rng.choice([0.05, 0.025, 0.0125, 0.1]))
        low, high = stats.permutation_ci(d, alpha)
        agreements.append((stats.permutation_p(d) <= alpha) == (not low <= 0 <= high))
    assert all(agreements)


def test_interval_is_unbounded_when_no_p_value_can_reach_alpha():
    d = np.array([0.3, 0.1, 0.2])  # 3 pairs: the smallest attainable p is 2/8 = 0.25
    assert stats.permutation_ci(d, 0.05) == (-math.inf, math.inf)
    low, high = stats.permutation_ci(d, 0.3)  # 0.25 < 0.3: both ends finite
    assert math.isfinite(low) and math.isfinite(high)


def test_a_constant_difference_has_a_point_interval():
    low, high = stats.permutation_ci(np.full(6, 0.04), 0.05)
    assert low == pytest.approx(0.04) and high == pytest.approx(0.04)


def test_random_sign_patterns_for_many_pairs_are_seeded_and_close_to_exact():
    n = stats.MAX_EXACT_PAIRS + 1
    flips = stats.sign_flips(n, seed=3)
    assert flips.shape == (stats.RANDOM_FLIPS + 1, n) and (flips[0] == 1).all()
    assert np.array_equal(flips, stats.sign_flips(n, seed=3))
    d = np.random.default_rng(0).normal(0.4, 1.0, n)
    exact = enumerated_exact(d)
    assert stats.permutation_p(d, seed=3) == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20_000))


def enumerated_exact(d: np.ndarray) -> float:
    """Exact p for 17 pairs by a vectorised enumeration written apart from the code under test."""
    n = len(d)
    patterns = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
    return float(np.mean(np.abs(patterns @ d) >= abs(d.sum()) - 1e-12))


def test_holm_by_hand():
    # p sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06)
    adjusted, levels = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert levels.tolist() == pytest.approx([0.05 / 3, 0.05, 0.05 / 2, 0.05 / 4])
    adjusted, _ = stats.holm([0.5, 0.6])
    assert adjusted.tolist() == pytest.approx([1.0, 1.0])  # capped at 1


def test_verdict_rule():
    assert stats.verdict(0.01, 0.02, 0.06) == "a>b"
    assert stats.verdict(0.01, -0.06, -0.02) == "a<b"
    assert stats.verdict(0.05, 0.02, 0.06) == "same"  # p_adj must be strictly below 0.05
    assert stats.verdict(0.01, -0.01, 0.06) == "same"


def test_effect_size():
    assert stats.effect_size(np.array([1.0, 2.0, 3.0])) == pytest.approx(2.0)  # mean 2, sd 1
    assert stats.effect_size(np.array([0.5, 0.5])) == math.inf
    assert math.isnan(stats.effect_size(np.zeros(3)))


@pytest.mark.parametrize("dz, n", [(0.5, 34), (0.8, 15), (1.0, 10)])
def test_pairs_needed_matches_the_paired_t_test_tables(dz, n):
    """Two-sided alpha 0.05, power 0.8 (G*Power's sample sizes for a paired t-test)."""
    assert stats.pairs_needed(dz, 0.05) == n


def test_pairs_needed_respects_the_sign_flip_floor():
    # a huge effect needs few pairs for the t-test, but the sign-flip test cannot go below 2/2^n
    assert stats.pairs_needed(10.0, 0.05 / 10) == 9  # 2/2^9 < 0.005 <= 2/2^8
    assert math.isnan(stats.pairs_needed(0.0, 0.05))


@pytest.mark.parametrize("n, seed", [(3, 0), (6, 1), (9, 2), (12, 3)])
def test_p_value_matches_scipys_permutation_test(n, seed):
    """scipy's exact one-sample permutation test flips each difference's sign, as the sign-flip test does; ties
    (integer differences) included."""
    rng = np.random.default_rng(seed)
    for d in (rng.normal(0.3, 1.0, n), rng.integers(-2, 3, n).astype(float)):
        reference = scipy.stats.permutation_test(
            (d,), np.mean, permutation_type="samples", n_resamples=np.inf, alternative="two-sided"
        )
        assert stats.permutation_p(d) == pytest.approx(reference.pvalue)


@pytest.mark.parametrize("seed", range(5))
def test_holm_matches_statsmodels(seed):
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 0.1, 6), [0.01, 0.01, 1.0], rng.uniform(0, 1, 4)])  # ties and a 1 included
    reject, reference, _, _ = multipletests(p, alpha=stats.ALPHA, method="holm")
    adjusted, levels = stats.holm(p)
    assert adjusted.tolist() == pytest.approx(reference.tolist())
    assert (adjusted <= stats.ALPHA).tolist() == reject.tolist()


@pytest.mark.parametrize("n, alpha", [(8, 0.05), (12, 0.05 / 3), (40, 0.05)])
def test_the_detectable_difference_has_the_promised_power(n, alpha):
    """At the minimum detectable difference the paired t-test's exact power (noncentral t) is about 80%."""
    delta = stats.detectable(n, 2.0, alpha)
    assert stats.paired_power(n, delta / 2.0, alpha) == pytest.approx(0.8, abs=0.02)


def test_too_few_pairs_detect_nothing():
    assert stats.detectable(4, 1.0, 0.05) == math.inf  # 2/2^4 > 0.05
    assert math.isnan(stats.detectable(1, math.nan, 0.05))
