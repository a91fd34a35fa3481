"""Timestep schedules: support, monotonicity, the anneal bound, strata, coverage and exact resume."""

from __future__ import annotations

import math

import pytest
import torch

from dreamfusion.config.schema import TimestepConfig
from dreamfusion.sds.schedules import (
    Schedule,
    anneal_t_max,
    dreamtime_tail,
    dreamtime_weights,
    make_schedule,
)

SCHEDULES = ["uniform", "anneal", "sqrt_anneal", "dreamtime", "stratified"]
T = 1000
TOTAL = 200


def _bounds(cfg: TimestepConfig) -> tuple[int, int]:
    """Support [t_min·(T−1), t_max·(T−1)] rounded: 20 and 979 for DreamFusion's U(0.02, 0.98)."""
    return round(cfg.t_min * (T - 1)), round(cfg.t_max * (T - 1))


def schedule_for(cfg: TimestepConfig, total: int, seed: int) -> Schedule:
    """The registered schedule `cfg` names, for a prior with T training timesteps."""
    return make_schedule(cfg, total, torch.ones(T), seed)


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


@pytest.mark.parametrize("schedule", ["sqrt_anneal", "dreamtime"])
@pytest.mark.parametrize("t_range", [(0.02, 0.98), (0.2, 0.6)])
def test_deterministic_schedules_are_monotone_from_top_to_bottom(schedule, t_range):
    cfg = TimestepConfig(schedule=schedule, t_min=t_range[0], t_max=t_range[1])
    lo, hi = _bounds(cfg)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(123)
    state = g1.get_state()
    ts = _run(schedule_for(cfg, TOTAL, seed=0), g1)
    assert ts == _run(schedule_for(cfg, TOTAL, seed=9), g2)  # independent of seed and generator
    assert torch.equal(g1.get_state(), state)  # draws nothing: the trial's other randomness is unaffected
    assert all(a >= b for a, b in zip(ts, ts[1:]))
    assert ts[0] == hi and ts[-1] == lo
    assert len(set(ts)) > TOTAL // 4  # it moves, not a constant


def test_sqrt_anneal_follows_hifa_formula():
    """t(i) = t_max − (t_max − t_min)·sqrt(i / (N − 1)), in units of T − 1."""
    cfg = TimestepConfig(schedule="sqrt_anneal", t_min=0.1, t_max=0.9)
    sampler = schedule_for(cfg, 101, seed=0)
    for step in (0, 1, 25, 50, 100):
        expected = round((0.9 - 0.8 * math.sqrt(step / 100)) * (T - 1))
        assert sampler(step, torch.Generator()) == expected


def test_anneal_upper_bound_decays_as_configured():
    cfg = TimestepConfig(schedule="anneal", t_min=0.02, t_max=0.98, anneal_to=0.5, anneal_start=0.2, anneal_end=0.6)
    total = 101  # progress = step / 100
    assert anneal_t_max(cfg, 0, total) == 0.98
    assert anneal_t_max(cfg, 20, total) == 0.98  # decay has not started
    assert anneal_t_max(cfg, 40, total) == pytest.approx(0.98 + (0.5 - 0.98) * 0.5)  # halfway through the decay
    assert anneal_t_max(cfg, 60, total) == pytest.approx(0.5)
    assert anneal_t_max(cfg, 100, total) == pytest.approx(0.5)  # held after anneal_end
    bounds = [anneal_t_max(cfg, s, total) for s in range(total)]
    assert all(a >= b for a, b in zip(bounds, bounds[1:]))

    # the draws respect the bound of their step and reach it: 300 independent runs per step
    sampler = schedule_for(cfg, total, seed=0)
    lo = round(0.02 * (T - 1))
    for step in (0, 40, 80):
        hi_now = round(anneal_t_max(cfg, step, total) * (T - 1))
        g = torch.Generator().manual_seed(step)
        draws = [sampler(step, g) for _ in range(300)]
        assert lo <= min(draws) and max(draws) <= hi_now
        assert max(draws) >= hi_now - 0.03 * (hi_now - lo)


def test_anneal_never_goes_below_t_min():
    cfg = TimestepConfig(schedule="anneal", t_min=0.3, t_max=0.9, anneal_to=0.1)
    assert anneal_t_max(cfg, 99, 100) == pytest.approx(0.3)
    g = torch.Generator().manual_seed(0)
    assert {schedule_for(cfg, 100, seed=0)(99, g) for _ in range(20)} == {round(0.3 * (T - 1))}


@pytest.mark.parametrize("strata", [8, 5])
def test_stratified_visits_each_stratum_once_per_cycle(strata):
    """With DreamFusion's support [20, 979] (960 integers) both 8 and 5 strata have integer widths: disjoint."""
    cfg = TimestepConfig(schedule="stratified", strata=strata)
    lo, hi = _bounds(cfg)
    width = (hi + 1 - lo) // strata
    assert width * strata == hi + 1 - lo
    ts = _run(schedule_for(cfg, strata * 12, seed=3), torch.Generator().manual_seed(0))
    orders = []
    for c in range(12):
        cycle = ts[c * strata : (c + 1) * strata]
        visited = [(t - lo) // width for t in cycle]
        assert sorted(visited) == list(range(strata))
        orders.append(tuple(visited))
    assert len(set(orders)) > 1  # the order within a cycle is random, not a fixed sweep


def test_stratified_with_uneven_strata_still_covers_each_once():
    """K = 7 on 960 integers: stratum j is the real interval [lo + j·w, lo + (j+1)·w), w = 960/7, floored."""
    cfg = TimestepConfig(schedule="stratified", strata=7)
    lo, hi = _bounds(cfg)
    w = (hi + 1 - lo) / 7
    ts = _run(schedule_for(cfg, 7 * 10, seed=1), torch.Generator().manual_seed(1))
    for c in range(10):
        for j, t in enumerate(sorted(ts[c * 7 : (c + 1) * 7])):
            assert math.floor(lo + j * w) <= t <= math.floor(lo + (j + 1) * w)
            assert t <= hi


def test_stratified_draws_anywhere_inside_its_stratum():
    """One uniform draw per visit, not a fixed point: over many cycles a stratum is covered end to end."""
    cfg = TimestepConfig(schedule="stratified", strata=4)
    lo, hi = _bounds(cfg)
    width = (hi + 1 - lo) // 4
    ts = _run(schedule_for(cfg, 4 * 400, seed=2), torch.Generator().manual_seed(2))
    first = [t for t in ts if t < lo + width]  # stratum 0: [lo, lo + width)
    assert len(first) == 400 and len(set(first)) > 100
    assert min(first) < lo + width // 10 and max(first) > lo + width - width // 10 - 1


def test_uniform_covers_the_range():
    cfg = TimestepConfig(schedule="uniform")
    lo, hi = _bounds(cfg)
    ts = torch.tensor(_run(schedule_for(cfg, 5000, seed=0), torch.Generator().manual_seed(0)), dtype=torch.float)
    assert ts.min() <= lo + 5 and ts.max() >= hi - 5
    assert abs(float(ts.mean()) - (lo + hi) / 2) < 15  # std of the mean ≈ 277/√5000 ≈ 4
    counts = torch.histc(ts, bins=4, min=lo, max=hi + 1)
    assert counts.min() > 0.2 * 5000  # each quarter gets about its share


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


def test_dreamtime_weights_integrate_to_one_inside_the_support():
    cfg = TimestepConfig(schedule="dreamtime")
    lo, hi = _bounds(cfg)
    w = dreamtime_weights(cfg, T)
    assert w.shape == (T,)
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (w[:lo] == 0).all() and (w[hi + 1 :] == 0).all()
    assert (w[lo : hi + 1] > 0).all()
    # plateau on [m2, m1] = [500, 800] at the maximum; Gaussian tails outside
    plateau = w[500:801]
    assert torch.allclose(plateau, plateau.max().expand_as(plateau))
    assert float(w[900] / w[700]) == pytest.approx(math.exp(-(100**2) / (2 * 300**2)), rel=1e-9)
    assert float(w[400] / w[700]) == pytest.approx(math.exp(-(100**2) / (2 * 100**2)), rel=1e-9)


def test_dreamtime_spends_steps_in_proportion_to_the_weight():
    """t(i) is the largest t whose tail mass reaches i/(N−1): so #{i : t(i) ≥ τ} = ⌊tail(τ)·(N − 1)⌋ + 1."""
    cfg = TimestepConfig(schedule="dreamtime")
    total = 301
    ts = torch.tensor(_run(schedule_for(cfg, total, seed=0), torch.Generator()))
    tail = dreamtime_tail(cfg, T)
    for tau in (100, 300, 500, 650, 800, 950):
        expected = math.floor(float(tail[tau]) * (total - 1) + 1e-9) + 1
        assert int((ts >= tau).sum()) == expected


def test_uniform_draws_both_ends_of_the_support_and_nothing_outside():
    """A prior with T = 101 and t ∈ [0.2, 0.23]: the support is exactly {20, 21, 22, 23}, every value drawn."""
    cfg = TimestepConfig(schedule="uniform", t_min=0.2, t_max=0.23)
    sampler = make_schedule(cfg, 400, torch.ones(101), seed=0)
    g = torch.Generator().manual_seed(0)
    assert {sampler(step, g) for step in range(400)} == {20, 21, 22, 23}  # P(a value never drawn) ≈ 4·0.75⁴⁰⁰


@pytest.mark.parametrize("schedule", ["sqrt_anneal", "dreamtime"])
def test_a_two_step_run_starts_at_the_top_and_ends_at_the_bottom(schedule):
    """Progress is i/(N − 1): with N = 2 the last step is progress 1, whatever the schedule's shape in between."""
    cfg = TimestepConfig(schedule=schedule, t_min=0.2, t_max=0.6)
    lo, hi = _bounds(cfg)
    sampler = schedule_for(cfg, 2, seed=0)
    assert [sampler(0, torch.Generator()), sampler(1, torch.Generator())] == [hi, lo]
    assert schedule_for(cfg, 1, seed=0)(0, torch.Generator()) == hi  # a one-step run stays at the top


def test_anneal_reaches_its_end_value_on_the_last_step_of_a_two_step_run():
    cfg = TimestepConfig(schedule="anneal", t_min=0.02, t_max=0.98, anneal_to=0.5, anneal_start=0.0, anneal_end=1.0)
    assert anneal_t_max(cfg, 0, 2) == 0.98
    assert anneal_t_max(cfg, 1, 2) == pytest.approx(0.5)


def test_dreamtime_weights_rescale_the_plateau_and_tails_to_the_priors_T():
    """m1, m2, s1, s2 are given for T = 1000: a prior with T = 500 halves all four (plateau [250, 400], s = 150, 50)."""
    cfg = TimestepConfig(schedule="dreamtime")
    t_count = 500
    lo, hi = round(0.02 * (t_count - 1)), round(0.98 * (t_count - 1))  # 10, 489

    def unnormalised(t: int) -> float:
        if not lo <= t <= hi:
            return 0.0
        if t > 400:
            return math.exp(-((t - 400) ** 2) / (2 * 150**2))
        if t < 250:
            return math.exp(-((t - 250) ** 2) / (2 * 50**2))
        return 1.0

    expected = torch.tensor([unnormalised(t) for t in range(t_count)], dtype=torch.float64)
    expected /= expected.sum()
    assert torch.allclose(dreamtime_weights(cfg, t_count), expected, rtol=1e-12, atol=0)


def test_dreamtime_on_a_flat_weight_visits_every_timestep_once():
    """With the plateau covering the whole support the weight is uniform over its n integers, the tail mass of t
    is (hi − t + 1)/n, and a run of n + 1 steps steps down one integer per step: hi, hi, hi − 1, …, lo."""
    cfg = TimestepConfig(schedule="dreamtime", dreamtime_m2=0, dreamtime_m1=1000)
    lo, hi = _bounds(cfg)
    n = hi - lo + 1
    ts = _run(schedule_for(cfg, n + 1, seed=0), torch.Generator())
    assert ts == [hi] + [hi - i + 1 for i in range(1, n + 1)]
