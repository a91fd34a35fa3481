"""What differs between the sweeps (or launches) a report compares, said before any number is compared: trial
settings, spec settings (Tune, resources, tracking) and the version of any registered component that ran in more
than one of them at different versions (a `df.component.<kind>` tag holds `name@version`)."""

from __future__ import annotations

import pandas as pd

from analysis.load import Sweep

#: Spec sections that are about the trials (`base`, `space`: compared through the trials' own params) or are
#: names and prose, not settings.
NOT_SETTINGS = ("name", "description", "base", "space")
MAX_SHOWN = 80


def _flatten(tree: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _shown(values: list) -> str:
    """One value as itself; several as `varied: a, b, c` (cut to MAX_SHOWN characters); none as `—`."""
    if not values:
        return "—"
    text = str(values[0]) if len(values) == 1 else "varied: " + ", ".join(map(str, values))
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"


def _values(frame: pd.DataFrame, column: str) -> list:
    if column not in frame:
        return []
    return sorted(frame[column].dropna().unique(), key=str)


def config_differences(sweep: Sweep) -> list[dict]:
    """Trial-config params whose values differ between sources (the varied ones show their levels)."""
    params = sorted(c for c in sweep.trials if c.startswith("param:"))
    rows = []
    for column in params:
        per = {s.label: _values(sweep.trials[sweep.trials["sweep"] == s.label], column) for s in sweep.sources}
        if len({tuple(map(str, v)) for v in per.values()}) > 1:
            rows.append({"kind": "config", "setting": column.removeprefix("param:"), **_render(per)})
    return rows


def spec_differences(sweep: Sweep) -> list[dict]:
    """Spec settings outside base and space (Tune, resources, retries, tracking) that differ."""
    flats = {s.label: _flatten({k: v for k, v in s.spec.items() if k not in NOT_SETTINGS}) for s in sweep.sources}
    keys = sorted({k for flat in flats.values() for k in flat})
    rows = []
    for key in keys:
        per = {label: [flat[key]] if key in flat else [] for label, flat in flats.items()}
        if len({tuple(map(str, v)) for v in per.values()}) > 1:
            rows.append({"kind": "spec", "setting": key, **_render(per)})
    return rows


def _components(frame: pd.DataFrame) -> dict[tuple[str, str], set[str]]:
    """(kind, name) → the versions that ran, from the `component:<kind>` columns (`a@1,b@2` for evaluators)."""
    found: dict[tuple[str, str], set[str]] = {}
    for column in (c for c in frame if c.startswith("component:")):
        for tag in frame[column].dropna():
            for label in str(tag).split(","):
                name, _, version = label.strip().partition("@")
                found.setdefault((column.removeprefix("component:"), name), set()).add(version)
    return found


def component_differences(sweep: Sweep) -> list[dict]:
    """Components that ran in more than one source at different versions: the same name, another algorithm."""
    per_source = {s.label: _components(sweep.trials[sweep.trials["sweep"] == s.label]) for s in sweep.sources}
    shared = {key for found in per_source.values() for key in found}
    rows = []
    for kind, name in sorted(shared):
        versions = {label: sorted(found.get((kind, name), set())) for label, found in per_source.items()}
        present = [tuple(v) for v in versions.values() if v]
        if len(present) > 1 and len(set(present)) > 1:
            shown = {label: ", ".join(f"{name}@{v}" for v in vs) or "—" for label, vs in versions.items()}
            rows.append({"kind": "component version", "setting": f"{kind} {name}", **shown})
    return rows


def _render(per: dict[str, list]) -> dict[str, str]:
    return {label: _shown(values) for label, values in per.items()}


def differences(sweep: Sweep) -> pd.DataFrame:
    """settings.csv: one row per setting that differs between the compared sweeps (empty for a single one)."""
    columns = ["kind", "setting", *sweep.labels]
    if len(sweep.sources) < 2:
        return pd.DataFrame(columns=columns)
    rows = component_differences(sweep) + spec_differences(sweep) + config_differences(sweep)
    return pd.DataFrame(rows, columns=columns)
