"""`df-sweep gc NAME --keep-best K`: a sweep's heavy artifacts (field weights, meshes, videos) kept for its best K
trials only. Everything else a run holds stays: params, metrics, tags, renders, its small final files; the runs
whose files went are tagged `df.gc`, so `df-sweep export` and `init_from` say why a file is missing. Read from
MLflow only, like a report: any store, whether or not the Tune results are still on disk."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from dreamfusion.errors import ConfigError
from dreamfusion.evaluators.base import all_metrics
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.artifacts import Artifact, delete_artifacts, heavy_artifacts
from dreamfusion.tracking.runs import child_runs
from dreamfusion.tracking.schema import GC_TAG, PARENT_TAG, SPEC_ARTIFACT, SWEEP_TAG
from dreamfusion.tracking.store import client, resolve_uri, sqlite_path

if TYPE_CHECKING:
    from mlflow.entities import Run

MB = 1 << 20


@dataclass
class Collected:
    run: Run
    artifacts: dict[str, Artifact]

    @property
    def size(self) -> int:
        return sum(a.size for a in self.artifacts.values())


def collect_garbage(
    name: str,
    keep_best: int,
    tracking_uri: str | None = None,
    metric: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> list[Collected]:
    """Delete the heavy artifacts of every finished or failed trial of sweep `name` but the best `keep_best` by
    `metric` (default: the sweep's own); runs still RUNNING are left alone. Says what it frees, run by run."""
    if keep_best < 0:
        raise ConfigError(f"--keep-best: expected 0 or more, got {keep_best}")
    uri = resolve_uri(tracking_uri)
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        raise ConfigError(f"--tracking-uri: no MLflow store at {db}")
    experiment = client(uri).get_experiment_by_name(name)
    if experiment is None:
        raise ConfigError(f"{name}: no sweep of that name in {uri}")
    parents = _parents(uri, experiment.experiment_id)
    metric, mode = _ranking(uri, parents, metric)
    runs = [r for p in parents for r in child_runs(uri, experiment.experiment_id, p.info.run_id)]
    kept = _best(runs, metric, mode, keep_best)
    doomed = [r for r in runs if r.info.run_id not in kept and r.info.status != "RUNNING"]
    collected = [Collected(r, heavy_artifacts(uri, r.info.run_id)) for r in doomed]
    collected = [c for c in collected if c.artifacts]
    verb = "would free" if dry_run else "freed"
    for c in collected:
        echo(f"{c.run.info.run_name} ({c.run.info.run_id}): {verb} {c.size / MB:.1f} MB ({', '.join(c.artifacts)})")
        if not dry_run:
            delete_artifacts(uri, c.run.info.run_id, list(c.artifacts))
            stamp = time.strftime("%Y-%m-%d %H:%M")
            note = f"{stamp}: deleted {', '.join(c.artifacts)}; kept the best {keep_best} by {metric}"
            client(uri).set_tag(c.run.info.run_id, GC_TAG, note)
    best = ", ".join(r.info.run_name for r in runs if r.info.run_id in kept) or "none"
    total = sum(c.size for c in collected)
    echo(
        f"{name}: {verb} {total / MB:.1f} MB from {len(collected)} runs; kept the best {len(kept)} by {metric}: {best}"
    )
    return collected


def _parents(uri: str, experiment_id: str) -> list[Run]:
    found = client(uri).search_runs([experiment_id], f"tags.{SWEEP_TAG} != ''", max_results=1000)
    return [r for r in found if PARENT_TAG not in r.data.tags]


def _ranking(uri: str, parents: list[Run], metric: str | None) -> tuple[str, str]:
    """(metric, mode): the one asked for, else the newest launch's spec's own."""
    if metric is None:
        newest = max(parents, key=lambda r: r.info.start_time or 0, default=None)
        if newest is None:
            raise ConfigError("--metric: the sweep has no launch with a spec to take its metric from; pass --metric")
        with tempfile.TemporaryDirectory() as tmp:
            path = client(uri).download_artifacts(newest.info.run_id, SPEC_ARTIFACT, tmp)
            metric = SweepSpec.model_validate(yaml.safe_load(Path(path).read_text())).tune.metric
    known = all_metrics()
    if metric not in known:
        raise ConfigError(f"--metric: expected a metric an evaluator logs ({', '.join(sorted(known))}), got {metric!r}")
    return metric, known[metric].mode


def _best(runs: list[Run], metric: str, mode: str, k: int) -> set[str]:
    """Run ids of the best k finished runs that logged `metric`."""
    scored = [r for r in runs if r.info.status == "FINISHED" and metric in r.data.metrics]
    scored.sort(key=lambda r: r.data.metrics[metric], reverse=mode == "max")
    return {r.info.run_id for r in scored[:k]}
