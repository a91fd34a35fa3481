"""Timestep schedules: support, monotonicity, the anneal bound, strata, coverage, exact resume, and DreamTime
against an independent implementation of the paper's walk on Stable Diffusion's noise schedule.

Conventions checked here (the module docstring of `dreamfusion/sds/schedules.py`): step i of N is at progress i/N,
and the fraction f of T is the integer timestep int(f·T), both ends included: [20, 980] for U(0.02, 0.98) of 1000.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from schedule_reference import dreamtime_weight, plateau, sd_alphas_cumprod, time_prioritized

from dreamfusion import registry
from dreamfusion.config.files import load_trial_config
from dreamfusion.config.schema import TimestepConfig
from dreamfusion.errors import ConfigError
from dreamfusion.sds.schedules import (
    Anneal,
    Schedule,
    anneal_t_max,
    denoiser_weight,
    make_schedule,
    plateau_weight,
    tail_mass,
    time_prior,
    timestep_index,
)

_anneal = lambda cfg: cfg.options_for(Anneal)
SCHEDULES = ["uniform", "anneal", "sqrt_anneal", "dreamtime", "dreamtime_plateau", "stratified"]
T = 1000
TOTAL = 200


SD_ALPHAS = torch.tensor(sd_alphas_cumprod())


def _bounds(cfg: TimestepConfig) -> tuple[int, int]:
    """Support [int(t_min·T), int(t_max·T)]: 20 and 980 for DreamFusion's U(0.02, 0.98)."""
    return int(cfg.t_min * T), int(cfg.t_max * T)


def schedule_for(cfg: TimestepConfig, total: int, seed: int) -> Schedule:
    """The registered schedule `cfg` names, for a prior with SD's noise schedule (T training timesteps)."""
    return make_schedule(cfg, total, SD_ALPHAS, seed)


def _run(sampler: Schedule, generator: torch.Generator, start: int = 0, stop: int | None = None) -> list[int]:
    return [sampler(step, generator) for step in range(start, sampler.total if stop is None else stop)]


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("t_range", [(0.02, 0.98), (0.2, 0.6)])
def test_every_t_is_an_integer_inside_the_support(schedule, t_range):
    cfg = TimestepConfig(schedule=schedule, t_min=t_range[0], t_max=t_range[1], anneal_to=0.1)
    lo, hi = _bounds(cfg)
    ts = _run(schedule_for(cfg, TOTAL, seed=0), torch.Generator().manual_seed(0))
    assert all(isinstance(t, int) for t in ts)
    assert lo <= min(ts) and max(ts) <= hi


@pytest.mark.parametrize("schedule", ["sqrt_anneal", "dreamtime", "dreamtime_plateau"])
@pytest.mark.parametrize("t_range", [(0.02, 0.98), (0.2, 0.6)])
def test_deterministic_schedules_walk_down_from_the_top(schedule, t_range):
    cfg = TimestepConfig(schedule=schedule, t_min=t_range[0], t_max=t_range[1])
    lo, hi = _bounds(cfg)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(123)
    state = g1.get_state()
    ts = _run(schedule_for(cfg, TOTAL, seed=0), g1)
    assert ts == _run(schedule_for(cfg, TOTAL, seed=9), g2)  # independent of seed and generator
    assert torch.equal(g1.get_state(), state)  # draws nothing: the trial's other randomness is unaffected
    assert all(a >= b for a, b in zip(ts, ts[1:]))
    assert ts[0] == hi  # progress 0 at the first step
    assert lo <= ts[-1] < (lo + hi) // 2  # progress (N − 1)/N at the last: in the bottom half, not at the bottom
    assert len(set(ts)) > TOTAL // 4  # it moves, not a constant


def test_sqrt_anneal_follows_hifa_formula():
    """t(i) = int((t_max − (t_max − t_min)·sqrt(i/N))·T), as threestudio's `sqrt_anneal`: worked by hand for N = 100
    (step 64: 0.9 − 0.8·0.8 = 0.26 exactly, which float arithmetic makes 0.25999…; it stays on step 260)."""
    cfg = TimestepConfig(schedule="sqrt_anneal", t_min=0.1, t_max=0.9)
    sampler = schedule_for(cfg, 100, seed=0)
    for step, expected in ((0, 900), (1, 820), (25, 500), (64, 260), (99, 104)):
        assert sampler(step, torch.Generator()) == expected


def test_timestep_index_is_int_f_t_capped_at_the_last_timestep():
    """int(f·T) with the hair of slack, and t_max = 1 (int(1·T) = T, one past the table) capped at T − 1."""
    assert timestep_index(1.0, 1000) == 999 and timestep_index(1.0, 50) == 49
    assert timestep_index(0.999, 1000) == 999 and timestep_index(0.98, 1000) == 980
    assert timestep_index(0.9 - 0.8 * 0.8, 1000) == 260  # 0.25999… stays on step 260
    assert timestep_index(0.0, 1000) == 0 and timestep_index(0.0255, 1000) == 25
    cfg = TimestepConfig(schedule="sqrt_anneal", t_min=0.5, t_max=1.0)
    assert schedule_for(cfg, 10, seed=0)(0, torch.Generator()) == T - 1  # the first step sits at t_max = 1


def test_anneal_upper_bound_decays_as_configured():
    cfg = TimestepConfig(schedule="anneal", t_min=0.02, t_max=0.98, anneal_to=0.5, anneal_start=0.2, anneal_end=0.6)
    total = 100  # progress = step / 100
    assert anneal_t_max(cfg, _anneal(cfg), 0, total) == 0.98
    assert anneal_t_max(cfg, _anneal(cfg), 20, total) == 0.98  # decay has not started
    assert anneal_t_max(cfg, _anneal(cfg), 40, total) == pytest.approx(
        0.98 + (0.5 - 0.98) * 0.5
    )  # halfway through the decay
    assert anneal_t_max(cfg, _anneal(cfg), 60, total) == pytest.approx(0.5)
    assert anneal_t_max(cfg, _anneal(cfg), 99, total) == pytest.approx(0.5)  # held after anneal_end
    bounds = [anneal_t_max(cfg, _anneal(cfg), s, total) for s in range(total)]
    assert all(a >= b for a, b in zip(bounds, bounds[1:]))

    # the draws respect the bound of their step and reach it: 300 independent runs per step
    sampler = schedule_for(cfg, total, seed=0)
    lo = int(0.02 * T)
    for step in (0, 40, 80):
        hi_now = int(anneal_t_max(cfg, _anneal(cfg), step, total) * T)
        g = torch.Generator().manual_seed(step)
        draws = [sampler(step, g) for _ in range(300)]
        assert lo <= min(draws) and max(draws) <= hi_now
        assert max(draws) >= hi_now - 0.03 * (hi_now - lo)


def test_anneal_never_goes_below_t_min():
    cfg = TimestepConfig(schedule="anneal", t_min=0.3, t_max=0.9, anneal_to=0.1)
    assert anneal_t_max(cfg, _anneal(cfg), 99, 100) == pytest.approx(0.3)
    g = torch.Generator().manual_seed(0)
    assert {schedule_for(cfg, 100, seed=0)(99, g) for _ in range(20)} == {300}


@pytest.mark.parametrize("strata", [31, 1])
def test_stratified_visits_each_stratum_once_per_cycle(strata):
    """DreamFusion's support [20, 980] holds 961 = 31² integers: 31 strata of 31 are disjoint and even."""
    cfg = TimestepConfig(schedule="stratified", strata=strata)
    lo, hi = _bounds(cfg)
    assert (lo, hi) == (20, 980)
    width = (hi + 1 - lo) // strata
    assert width * strata == hi + 1 - lo
    ts = _run(schedule_for(cfg, strata * 12, seed=3), torch.Generator().manual_seed(0))
    orders = []
    for c in range(12):
        cycle = ts[c * strata : (c + 1) * strata]
        visited = [(t - lo) // width for t in cycle]
        assert sorted(visited) == list(range(strata))
        orders.append(tuple(visited))
    assert len(set(orders)) == (1 if strata == 1 else 12)  # the order within a cycle is random, not a fixed sweep


@pytest.mark.parametrize("strata", [8, 7])
def test_stratified_with_uneven_strata_still_covers_each_once(strata):
    """961 integers in K strata: stratum j is the real interval [lo + j·w, lo + (j+1)·w), w = 961/K, floored."""
    cfg = TimestepConfig(schedule="stratified", strata=strata)
    lo, hi = _bounds(cfg)
    w = (hi + 1 - lo) / strata
    ts = _run(schedule_for(cfg, strata * 10, seed=1), torch.Generator().manual_seed(1))
    for c in range(10):
        for j, t in enumerate(sorted(ts[c * strata : (c + 1) * strata])):
            assert math.floor(lo + j * w) <= t <= math.floor(lo + (j + 1) * w)
            assert t <= hi


def test_stratified_draws_anywhere_inside_its_stratum():
    """One uniform draw per visit, not a fixed point: over many cycles a stratum is covered end to end."""
    cfg = TimestepConfig(schedule="stratified", strata=31)
    ts = _run(schedule_for(cfg, 31 * 400, seed=2), torch.Generator().manual_seed(2))
    first = [t for t in ts if t < 20 + 31]  # stratum 0: the 31 integers 20 … 50
    assert len(first) == 400 and set(first) == set(range(20, 51))


def test_uniform_covers_the_range_both_ends_included():
    cfg = TimestepConfig(schedule="uniform")
    lo, hi = _bounds(cfg)
    ts = torch.tensor(_run(schedule_for(cfg, 20000, seed=0), torch.Generator().manual_seed(0)), dtype=torch.float)
    assert ts.min() == lo and ts.max() == hi  # 20 and 980, each drawn ~21 times in 20,000 draws from 961 values
    assert abs(float(ts.mean()) - (lo + hi) / 2) < 8  # std of the mean ≈ 277/√20000 ≈ 2
    counts = torch.histc(ts, bins=4, min=lo, max=hi + 1)
    assert counts.min() > 0.2 * 20000  # each quarter gets about its share


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_resume_reproduces_the_uninterrupted_sequence(schedule):
    """A sampler rebuilt at step s with the generator restored to its state at s continues identically."""
    cfg = TimestepConfig(schedule=schedule, strata=7)
    total, s = 60, 23
    g = torch.Generator().manual_seed(11)
    straight = _run(schedule_for(cfg, total, seed=4), g)

    g = torch.Generator().manual_seed(11)
    first = _run(schedule_for(cfg, total, seed=4), g, 0, s)
    saved = g.get_state()
    g2 = torch.Generator().manual_seed(999)  # a fresh process's generator...
    g2.set_state(saved)  # ...restored from the checkpoint
    rest = _run(schedule_for(cfg, total, seed=4), g2, s, total)
    assert first + rest == straight


# -- DreamTime ---------------------------------------------------------------------------------------------------


def test_dreamtime_weights_are_the_papers():
    """W_p: plateau on [m2, m1] = [500, 800], Gaussian tails; W_d = sqrt((1 − ᾱ)/ᾱ); p(t) normalised on [lo, hi]."""
    cfg = TimestepConfig(schedule="dreamtime")
    lo, hi = _bounds(cfg)
    wp = plateau_weight(cfg, T)
    assert np.allclose(wp.numpy(), plateau(), rtol=1e-12, atol=0)
    assert (wp[500:801] == 1).all()
    assert float(wp[900]) == pytest.approx(math.exp(-(100**2) / (2 * 300**2)), rel=1e-12)
    assert float(wp[400]) == pytest.approx(math.exp(-(100**2) / (2 * 100**2)), rel=1e-12)
    ab = sd_alphas_cumprod()
    assert np.allclose(denoiser_weight(SD_ALPHAS).numpy(), np.sqrt((1 - ab) / ab), rtol=1e-12, atol=0)
    p = time_prior(wp, lo, hi)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (p[:lo] == 0).all() and (p[hi + 1 :] == 0).all() and (p[lo : hi + 1] > 0).all()
    assert float(tail_mass(p)[lo]) == pytest.approx(1.0) and float(tail_mass(p)[hi + 1]) == 0


def test_dreamtime_on_stable_diffusion_is_the_published_schedule():
    """The reference point of the issue: W_d·W_p on SD's schedule, t ∈ [0.02, 0.98], m1 = 800, m2 = 500,
    s1 = 300, s2 = 100 gives t = 832 halfway through a 10,000-step run, and every step agrees with the paper's walk
    computed independently in float64 here."""
    steps = 10_000
    ours = _run(schedule_for(TimestepConfig(schedule="dreamtime"), steps, seed=0), torch.Generator())
    ab = sd_alphas_cumprod()
    expected = time_prioritized(dreamtime_weight(ab), 20, 980, steps)
    assert ours[5000] == expected[5000] == 832
    assert (ours[0], ours[2500], ours[7500], ours[-1]) == (980, 917, 694, 210)
    assert ours == expected


def test_dreamtime_plateau_is_the_walk_without_the_denoiser_weight():
    steps = 10_000
    ours = _run(schedule_for(TimestepConfig(schedule="dreamtime_plateau"), steps, seed=0), torch.Generator())
    assert ours == time_prioritized(plateau(), 20, 980, steps)
    assert ours[5000] == 672
    faithful = _run(schedule_for(TimestepConfig(schedule="dreamtime"), steps, seed=0), torch.Generator())
    gap = np.array(faithful) - np.array(ours)
    assert gap.min() >= 0 and gap.max() == 177  # without W_d, t runs up to 177 steps lower on SD's schedule


def test_dreamtime_spends_steps_in_proportion_to_the_weight():
    """t(i) is the largest t whose tail mass reaches i/N: so #{i : t(i) ≥ τ} = ⌊tail(τ)·N⌋ + 1, tail from numpy."""
    total = 301
    ab = sd_alphas_cumprod()
    w = dreamtime_weight(ab)[20:981]
    tail = np.cumsum((w / w.sum())[::-1])[::-1]  # tail[t − 20] = Σ_{τ ≥ t} p(τ)
    ts = np.array(_run(schedule_for(TimestepConfig(schedule="dreamtime"), total, seed=0), torch.Generator()))
    for tau in (100, 300, 500, 650, 800, 950):
        assert int((ts >= tau).sum()) == math.floor(tail[tau - 20] * total) + 1


def test_time_prioritized_walk_keeps_t_while_its_tail_mass_exactly_reaches_i_over_n():
    """A uniform weight on the 3 timesteps {20, 21, 22} (T = 100, a plateau wider than T): tail masses 1/3, 2/3, 1
    from the top, and 6 steps at i/6. Steps 2 and 4 tie exactly (2/6 = 1/3, 4/6 = 2/3 in float64), and "the largest
    t whose tail mass reaches i/N" keeps t there: 22, 22, 22, 21, 21, 20 (bisect_left, as the reference)."""
    cfg = TimestepConfig(schedule="dreamtime_plateau", t_min=0.2, t_max=0.22, dreamtime_m1=1000, dreamtime_m2=0)
    sampler = make_schedule(cfg, 6, torch.ones(100), seed=0)
    ts = _run(sampler, torch.Generator())
    assert ts == [22, 22, 22, 21, 21, 20]
    assert ts == time_prioritized(np.ones(100), 20, 22, 6)


def test_uniform_draws_both_ends_of_the_support_and_nothing_outside():
    """A prior with T = 101 and t ∈ [0.2, 0.23]: int(f·T) gives the support {20, 21, 22, 23}, every value drawn."""
    cfg = TimestepConfig(schedule="uniform", t_min=0.2, t_max=0.23)
    sampler = make_schedule(cfg, 400, torch.ones(101), seed=0)
    g = torch.Generator().manual_seed(0)
    assert {sampler(step, g) for step in range(400)} == {20, 21, 22, 23}  # P(a value never drawn) ≈ 4·0.75⁴⁰⁰


def test_the_plateau_weight_rescales_to_the_priors_T():
    """m1, m2, s1, s2 are given for T = 1000: a prior with T = 500 halves all four (plateau [250, 400], s = 150, 50)."""
    cfg = TimestepConfig(schedule="dreamtime")

    def expected(t: int) -> float:
        if t > 400:
            return math.exp(-((t - 400) ** 2) / (2 * 150**2))
        if t < 250:
            return math.exp(-((t - 250) ** 2) / (2 * 50**2))
        return 1.0

    reference = torch.tensor([expected(t) for t in range(500)], dtype=torch.float64)
    assert torch.allclose(plateau_weight(cfg, 500), reference, rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"anneal_start": 0.6, "anneal_end": 0.4}, "anneal_start must be <= anneal_end"),
        ({"dreamtime_m1": 400, "dreamtime_m2": 500}, "dreamtime_m2 must be <= dreamtime_m1"),
    ],
)
def test_a_schedules_options_are_checked_together(options, error):
    """Ends that meet are a valid (instant) decay or an empty plateau; crossed ends are a one-line error."""
    schedule = "anneal" if "anneal_start" in options else "dreamtime"
    meet = {k: min(options.values()) for k in options}
    assert TimestepConfig(schedule=schedule, **meet).options_for(registry.find("schedule", schedule))
    with pytest.raises(ConfigError, match=rf"^--set: sds.timesteps: {error}$"):
        load_trial_config(
            None, [f"sds.timesteps.schedule={schedule}", *(f"sds.timesteps.{k}={v}" for k, v in options.items())]
        )
