"""What the chosen search algorithm and trial scheduler cannot do with a spec, said without importing Ray or a
searcher, so that `df-sweep validate` refuses it in one line before anything starts: a space a searcher cannot
express, a searcher whose optional extra is missing, a PBT that would perturb what a checkpoint cannot change.
Building them on Ray Tune is `dreamfusion/tune/searchers.py`.
"""

from __future__ import annotations

import importlib.util

from dreamfusion.sweep.space import Dimension, dependents
from dreamfusion.sweep.spec import MODEL_BASED, SweepSpec

#: What each searcher imports; `hyperopt` and `bohb` come with the optional extra of the same name.
SEARCHER_MODULES = {"optuna": ("optuna",), "hyperopt": ("hyperopt",), "bohb": ("hpbandster", "ConfigSpace")}
SCALARS = (str, int, float, bool)
#: Config sections whose values a trial can change while continuing another trial's checkpoint; what the
#: checkpoint's shapes depend on (the NeRF, the learned background) and what a trial is scored on cannot.
MUTABLE = ("sds.", "optim.", "reg.", "camera.", "render.")
FROZEN = ("render.background",)


def search_problem(spec: SweepSpec) -> tuple[str, str] | None:
    """(spec key, why) for the first thing the chosen search algorithm or scheduler cannot do with this space."""
    t = spec.tune
    if t.search == "bohb" and t.scheduler != "hyperband":
        return "tune.scheduler", "search bohb needs its HyperBand scheduler (HyperBandForBOHB); expected hyperband"
    missing = [m for m in SEARCHER_MODULES.get(t.search, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return "tune.search", f"{t.search} needs {', '.join(missing)}: pip install 'df-sweep[{t.search}]'"
    for key, dim in spec.space.items():
        why = _inexpressible(t.search, dim)
        if why:
            return f"space.{key}", why
    if t.scheduler == "pbt":
        return pbt_problem(spec)
    return None


def _inexpressible(search: str, dim: Dimension) -> str | None:
    if search == "grid" and dim.kind != "grid":
        return f"search grid enumerates every dimension, and {dim.kind} draws; expected {{grid: [...]}}, or random"
    if search in MODEL_BASED and dim.kind == "grid":
        return f"{search} draws every value itself and cannot cross a grid; expected {{choice: [...]}}"
    if search in ("optuna", "bohb") and dim.kind == "choice" and not all(isinstance(v, SCALARS) for v in dim.argument):
        return f"{search} chooses among strings, numbers and booleans only; expected such values"
    if search == "bohb" and dim.kind == "quniform":
        return "bohb (ConfigSpace) has no quantized range; expected uniform or randint"
    return None


def pbt_problem(spec: SweepSpec) -> tuple[str, str] | None:
    """(spec key, why) for the first thing PBT cannot do with this spec."""
    p, t = spec.tune.pbt, spec.tune
    if t.search not in ("random", "grid"):
        return "tune.scheduler", f"pbt works with search random or grid (Tune's rule), not {t.search}"
    if not p.mutate:
        return "tune.pbt.mutate", "expected the space keys PBT perturbs, e.g. [sds.guidance_scale]"
    for key in p.mutate:
        if key not in spec.space:
            return "tune.pbt.mutate", f"{key} is not a dimension of the space"
        if spec.space[key].when is not None or dependents(spec.space, key):
            return "tune.pbt.mutate", f"{key} is part of a condition; PBT perturbs a value every trial has"
        if not key.startswith(MUTABLE) or key.startswith(FROZEN):
            return "tune.pbt.mutate", (
                f"{key}: a trial continuing another's checkpoint keeps its model and what it is scored on; "
                f"expected keys under {', '.join(m.rstrip('.') for m in MUTABLE)}"
            )
    for key in spec.space:
        if key not in p.mutate and key != "seed":
            return f"space.{key}", (
                "pbt: a trial that exploits another takes on its whole config, so this value would change too; "
                "expected it in tune.pbt.mutate, or only seed besides the mutated keys"
            )
    base = spec.trial_config({})
    if p.perturbation_interval % base.checkpoint_every:
        return "tune.pbt.perturbation_interval", (
            f"{p.perturbation_interval} is not a multiple of checkpoint_every ({base.checkpoint_every}, a multiple "
            f"of eval.every {base.eval.every}): a trial exploits the checkpoint saved at the evaluation PBT ranked"
        )
    return None
