"""Conditional dimensions: the exact count (against a brute-force enumeration written independently), the
dry-run table, and that every searcher's own space yields exactly the trials the spec describes: Ray's variant
generator, Optuna's define-by-run, HyperOpt's nested space and BOHB's ConfigSpace, each real and seeded."""

from __future__ import annotations

import itertools
import math

import pytest
import yaml
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.console.table import trial_table
from dreamfusion.sweep.space import combinations, count
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tune.domains import variant_space
from dreamfusion.tune.searchers import OptunaSpace, bohb_space, hyperopt_space

SCHEDULES = ["uniform", "anneal", "dreamtime"]
CONDITIONAL = {
    "sds.timesteps.schedule": {"grid": SCHEDULES},
    "sds.timesteps.dreamtime_m1": {"grid": [700, 800], "when": {"sds.timesteps.schedule": "dreamtime"}},
    "sds.timesteps.dreamtime_s1": {"uniform": [200, 400], "when": {"sds.timesteps.schedule": "dreamtime"}},
    "sds.timesteps.anneal_to": {"grid": [0.3, 0.5, 0.7], "when": {"sds.timesteps.schedule": ["anneal"]}},
    "prompt": {"grid": ["a red cube", "a blue sphere"]},
    "seed": {"grid": [0, 1]},
}


def _spec(space: dict, **tune) -> SweepSpec:
    return SweepSpec.model_validate({"name": "cond", "base": {"steps": 10}, "space": space, "tune": tune})


def _brute_force(space: dict) -> list[tuple]:
    """Every trial of the full cross product, a conditional key blanked out ('-') where its condition fails,
    duplicates dropped: how many distinct trials the spec means, counted without the code under test."""
    keys = list(space)
    values = [d.get("grid", ["~"]) for d in space.values()]  # sampled dimensions: one stand-in value
    seen = set()
    for combo in itertools.product(*values):
        point = dict(zip(keys, combo))
        for key, dim in space.items():
            if "when" in dim:
                ((on, allowed),) = dim["when"].items()
                allowed = allowed if isinstance(allowed, list) else [allowed]
                if point[on] not in allowed:
                    point[key] = "-"
        seen.add(tuple(point.values()))
    return sorted(seen)


def test_a_conditional_grid_is_crossed_only_where_its_condition_holds():
    spec = _spec(CONDITIONAL, num_samples=3)
    expected = len(_brute_force(CONDITIONAL)) * 3
    assert expected == (1 + 3 + 2) * 2 * 2 * 3  # uniform; anneal x 3 anneal_to; dreamtime x 2 m1
    assert spec.num_trials() == expected
    assert len(list(spec.grid_points())) * 3 == expected
    rows = trial_table(spec)
    assert len(rows) == expected and rows[-1]["#"] == str(expected - 1)
    uniform = [r for r in rows if r["sds.timesteps.schedule"] == "uniform"]
    assert {r["sds.timesteps.dreamtime_m1"] for r in uniform} == {"-"}
    assert {r["sds.timesteps.dreamtime_s1"] for r in uniform} == {"-"}
    dreamtime = [r for r in rows if r["sds.timesteps.schedule"] == "dreamtime"]
    assert {r["sds.timesteps.dreamtime_s1"] for r in dreamtime} == {"~uniform(200, 400)"}


@pytest.mark.parametrize("n_cond", [1, 2, 3])
def test_the_closed_form_count_matches_the_enumeration(n_cond):
    space = _spec(CONDITIONAL).space
    options = {k: (d.argument if d.kind == "grid" else [0.0])[:n_cond] for k, d in space.items()}
    assert count(space, options) == sum(1 for _ in combinations(space, options))


def test_the_dry_run_prints_the_exact_count_of_a_conditional_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = tmp_path / "cond.yaml"
    spec.write_text(yaml.safe_dump({"name": "cond", "base": {"steps": 10}, "space": CONDITIONAL}))
    result = CliRunner().invoke(app, ["launch", str(spec), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "sweep cond: 24 trials (24 grid point(s) x num_samples 1" in result.output
    assert sum(line.split()[0].isdigit() for line in result.output.splitlines()) == 24
    assert "cost: ~" in result.output and "CPU-hours" in result.output


def _ray_trials(spec: SweepSpec) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    variants = []
    for _ in range(spec.tune.num_samples):
        for _, config in generate_variants(variant_space(spec.space), random_state=spec.tune.seed):
            variants.append(spec.trial_values(config))
    return variants


def test_rays_variant_generator_makes_exactly_the_counted_trials():
    spec = _spec(CONDITIONAL, seed=3)
    trials = _ray_trials(spec)
    assert len(trials) == spec.num_trials()
    grid_keys = [k for k, d in spec.space.items() if d.kind == "grid"]
    assert sorted(tuple(t.get(k, "-") for k in grid_keys) for t in trials) == sorted(
        tuple(p.get(k, "-") for k in grid_keys) for p in spec.grid_points()
    )
    for trial in trials:
        assert ("sds.timesteps.dreamtime_s1" in trial) == (trial["sds.timesteps.schedule"] == "dreamtime")
        if "sds.timesteps.dreamtime_s1" in trial:
            assert 200 <= trial["sds.timesteps.dreamtime_s1"] < 400
    assert _ray_trials(spec) == trials  # seeded: the same draws again


SAMPLED = {
    "sds.timesteps.schedule": {"choice": ["anneal", "dreamtime"]},
    "sds.timesteps.dreamtime_m1": {"uniform": [700, 900], "when": {"sds.timesteps.schedule": "dreamtime"}},
    "sds.guidance_scale": {"loguniform": [2, 100]},
    "seed": {"randint": [0, 4]},
}


def _check_drawn(trial: dict) -> None:
    assert trial["sds.timesteps.schedule"] in ("anneal", "dreamtime")
    assert ("sds.timesteps.dreamtime_m1" in trial) == (trial["sds.timesteps.schedule"] == "dreamtime")
    assert 2 <= trial["sds.guidance_scale"] <= 100 and trial["seed"] in range(4)


def test_optuna_suggests_a_conditional_value_only_where_its_condition_holds():
    import optuna

    spec = _spec(SAMPLED, search="optuna", num_samples=20)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = []
    for _ in range(20):
        trial = study.ask()
        OptunaSpace(spec.space)(trial)
        drawn.append(spec.trial_values(trial.params))
        study.tell(trial, 0.0)
    for trial in drawn:
        _check_drawn(trial)
    assert {t["sds.timesteps.schedule"] for t in drawn} == {"anneal", "dreamtime"}


def test_hyperopt_nests_a_conditional_value_under_its_condition():
    from hyperopt.pyll import stochastic

    spec = _spec(SAMPLED, search="hyperopt", num_samples=20)
    space = hyperopt_space(spec.space)
    drawn = [
        spec.trial_values(stochastic.sample(space, rng=__import__("numpy").random.default_rng(i))) for i in range(20)
    ]
    for trial in drawn:
        _check_drawn(trial)
    assert {t["sds.timesteps.schedule"] for t in drawn} == {"anneal", "dreamtime"}


def test_bohb_configspace_leaves_an_inactive_value_out():
    pytest.importorskip("ConfigSpace")
    spec = _spec(SAMPLED, search="bohb", scheduler="hyperband", num_samples=20)
    drawn = [spec.trial_values(dict(c)) for c in bohb_space(spec.space, seed=0).sample_configuration(20)]
    for trial in drawn:
        _check_drawn(trial)
    assert {t["sds.timesteps.schedule"] for t in drawn} == {"anneal", "dreamtime"}


def test_a_grid_cost_sums_its_trials_and_a_choice_averages_them():
    from dreamfusion.console.cost import estimate, table, trial_seconds

    times = table()[0][("toyworld", "small", "cpu")]
    steps = {"steps": {"grid": [100, 300]}}
    grid = estimate(_spec(steps))
    each = [trial_seconds(_spec(steps).trial_config({"steps": s}), times) for s in (100, 300)]
    assert grid is not None and math.isclose(grid.trial_s, sum(each))
    chosen = estimate(_spec({"steps": {"choice": [100, 300]}}, num_samples=4))
    assert chosen is not None and math.isclose(chosen.trial_s, 4 * sum(each) / 2)


@pytest.mark.parametrize(
    "kind, argument",
    [("uniform", (0.0, 1.0)), ("loguniform", (1e-4, 1e-1)), ("randint", (0, 5)), ("quniform", (32.0, 64.0, 16.0))],
)
def test_validation_draws_the_kind_of_number_tune_draws_inside_the_range(kind, argument):
    """What a spec's check puts through the trial schema stands for what Tune gives the trials: the same type of
    number (a float from a float distribution, which an integer field refuses), inside the range, the same each time."""
    from dreamfusion.sweep.space import Dimension
    from dreamfusion.tune.domains import tune_domain

    dim = Dimension(**{kind: argument})
    drawn = dim.draws()
    tune_drawn = tune_domain(kind, argument).sample(size=3)
    assert drawn == dim.draws() and len(drawn) == 3
    assert {type(v) for v in drawn} == {type(v.item() if hasattr(v, "item") else v) for v in tune_drawn}
    assert all(argument[0] <= v <= argument[1] for v in drawn)
    assert dim.checked_values()[: len(dim.extremes())] == dim.extremes()


def test_an_integer_field_is_found_from_its_annotation():
    from dreamfusion.config.files import key_annotation, takes_integers

    integers = ["seed", "render.resolution", "sds.timesteps.strata", "export.video_frames"]
    others = ["sds.guidance_scale", "prompt", "nerf.size", "speed.fused_grid", "no.such.key", "render.resolution.x"]
    assert all(takes_integers(key_annotation(k)) for k in integers)
    assert not any(takes_integers(key_annotation(k)) for k in others)
