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

from dreamfusion.errors import ConfigError, RunError, first_line
from dreamfusion.evaluators.base import all_metrics
from dreamfusion.sweep.spec import SweepSpec
from dreamfusion.tracking.artifacts import Artifact, delete_artifacts, heavy_artifacts
from dreamfusion.tracking.runs import child_runs
from dreamfusion.tracking.schema import GC_TAG, PARENT_TAG, SPEC_ARTIFACT, SWEEP_TAG
from dreamfusion.tracking.store import client, resolve_uri, sqlite_path

if TYPE_CHECKING:
    from mlflow.entities import Run

MB = 1 << 20
#: How runs with the same value of the metric are ranked, said wherever a tie decides which are kept.
TIE_RULE = "a tie goes to the earlier started run"


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
    kept, tied = _best(runs, metric, mode, keep_best)
    if tied:
        names = ", ".join(r.info.run_name or r.info.run_id for r in tied)
        echo(f"tie at the cut: {names} have the same {metric} ({tied[0].data.metrics[metric]:.4g}); {TIE_RULE}")
    doomed = [r for r in runs if r.info.run_id not in kept and r.info.status != "RUNNING"]
    collected = [Collected(r, heavy_artifacts(uri, r.info.run_id)) for r in doomed]
    collected = [c for c in collected if c.artifacts]
    verb = "would free" if dry_run else "freed"
    for c in collected:
        echo(f"{c.run.info.run_name} ({c.run.info.run_id}): {verb} {c.size / MB:.1f} MB ({', '.join(c.artifacts)})")
        if not dry_run:
            _delete(uri, c, f"kept the best {keep_best} by {metric}")
    best = ", ".join(r.info.run_name for r in runs if r.info.run_id in kept) or "none"
    total = sum(c.size for c in collected)
    rule = f" ({TIE_RULE})" if tied else ""
    echo(
        f"{name}: {verb} {total / MB:.1f} MB from {len(collected)} runs; kept the best {len(kept)} by {metric}{rule}: "
        f"{best}"
    )
    return collected


def _delete(uri: str, c: Collected, why: str) -> None:
    """Tag first, then delete: a deletion cut short (a store or disk error, a kill) leaves a run whose missing
    files its `df.gc` tag explains, so `export` says "deleted by df-sweep gc", and gc run again finishes it."""
    run_id, names = c.run.info.run_id, ", ".join(c.artifacts)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    mlflow = client(uri)
    mlflow.set_tag(run_id, GC_TAG, f"{stamp}: deleting {names}; {why}")
    try:
        delete_artifacts(uri, run_id, list(c.artifacts))
    except Exception as exc:  # the store's and the filesystem's errors alike
        mlflow.set_tag(run_id, GC_TAG, f"{stamp}: deleting {names} failed part way ({first_line(exc)}); {why}")
        raise RunError(
            f"{c.run.info.run_name} ({run_id}): deleting its artifacts failed part way ({first_line(exc)}); the run "
            f"is tagged {GC_TAG}, and df-sweep gc run again deletes what is left"
        ) from None
    mlflow.set_tag(run_id, GC_TAG, f"{stamp}: deleted {names}; {why}")


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


def _best(runs: list[Run], metric: str, mode: str, k: int) -> tuple[set[str], list[Run]]:
    """Run ids of the best k finished runs that logged `metric`, and the runs tied at the cut (the same value on
    both sides of it, kept or not), which `TIE_RULE` orders."""
    scored = [r for r in runs if r.info.status == "FINISHED" and metric in r.data.metrics]
    sign = -1 if mode == "max" else 1
    scored.sort(key=lambda r: (sign * r.data.metrics[metric], r.info.start_time or 0, r.info.run_id))
    kept = scored[:k]
    cut = kept[-1].data.metrics[metric] if kept and len(scored) > k else None
    tied = [r for r in scored if cut is not None and r.data.metrics[metric] == cut]
    return {r.info.run_id for r in kept}, tied if any(r not in kept for r in tied) else []
