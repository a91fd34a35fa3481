"""`df-sweep gc` without a store: its ranking (ties at the cut broken by start time, and said) and its order of
work (the `df.gc` tag before any deletion, so a deletion cut short still explains the missing files)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dreamfusion.errors import RunError
from dreamfusion.tune import retention
from dreamfusion.tune.retention import TIE_RULE, collect_garbage


def _run(name: str, value: float | None, start: int, status: str = "FINISHED"):
    metrics = {} if value is None else {"clip_score": value}
    info = SimpleNamespace(run_id=f"id-{name}", run_name=name, status=status, start_time=start)
    return SimpleNamespace(info=info, data=SimpleNamespace(metrics=metrics, tags={}))


@pytest.fixture
def store(monkeypatch):
    """A sweep of four runs, b and c tied for second; what gc tags and deletes, in order."""
    runs = [_run("a", 0.9, 4), _run("c", 0.5, 3), _run("b", 0.5, 2), _run("d", 0.1, 1)]
    calls: list[tuple[str, ...]] = []
    mlflow = SimpleNamespace(
        get_experiment_by_name=lambda name: SimpleNamespace(experiment_id="1"),
        set_tag=lambda run_id, key, value: calls.append(("tag", run_id, value)),
    )
    monkeypatch.setattr(retention, "client", lambda uri: mlflow)
    parent = SimpleNamespace(info=SimpleNamespace(run_id="p"))
    monkeypatch.setattr(retention, "_parents", lambda uri, experiment_id: [parent])
    monkeypatch.setattr(retention, "_ranking", lambda uri, parents, metric: ("clip_score", "max"))
    monkeypatch.setattr(retention, "child_runs", lambda uri, experiment_id, parent: runs)
    heavy = {"final/field.pt": SimpleNamespace(size=1 << 20), "final/mesh.glb": SimpleNamespace(size=1 << 20)}
    monkeypatch.setattr(retention, "heavy_artifacts", lambda uri, run_id: dict(heavy))
    monkeypatch.setattr(retention, "delete_artifacts", lambda uri, run_id, names: calls.append(("delete", run_id)))
    return calls


def test_a_tie_at_the_cut_goes_to_the_earlier_run_and_is_said(store):
    lines: list[str] = []
    collected = collect_garbage("s", 2, "http://store", echo=lines.append)
    assert {c.run.info.run_name for c in collected} == {"c", "d"}  # b started before c
    assert lines[0] == f"tie at the cut: b, c have the same clip_score (0.5); {TIE_RULE}"
    assert lines[-1].endswith(f"kept the best 2 by clip_score ({TIE_RULE}): a, b")


def test_no_tie_is_reported_where_the_cut_falls_between_values(store):
    lines: list[str] = []
    collect_garbage("s", 1, "http://store", echo=lines.append)
    assert not any("tie" in line for line in lines)


def test_the_gc_tag_comes_before_the_deletion(store):
    collect_garbage("s", 3, "http://store", echo=lambda line: None)
    assert [c[0] for c in store] == ["tag", "delete", "tag"]
    assert "deleting final/field.pt, final/mesh.glb" in store[0][2] and "deleted" in store[2][2]


def test_a_deletion_that_fails_part_way_leaves_the_run_tagged(store, monkeypatch):
    def fails(uri, run_id, names):
        raise OSError("disk gone")

    monkeypatch.setattr(retention, "delete_artifacts", fails)
    with pytest.raises(RunError, match=r"d \(id-d\): deleting its artifacts failed part way \(disk gone\)"):
        collect_garbage("s", 3, "http://store", echo=lambda line: None)
    assert [c[0] for c in store] == ["tag", "tag"]
    assert "failed part way (disk gone)" in store[-1][2]
