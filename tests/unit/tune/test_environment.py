"""What a launch checks of its environment before it starts Ray or writes anything: a tracking store that is not a
whole SQLite database (overwritten, cut short), a results storage that is a file or cannot be written, and a Ray
older than the one df-sweep needs. Each is one line and a non-zero exit, with the files left as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from process_helpers import read_only
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.tracking.store import open_experiment
from dreamfusion.tune.session import MIN_RAY

SPEC = {"name": "env", "base": {"steps": 10, "nerf": {"size": "tiny"}}, "space": {"seed": {"grid": [0, 1]}}}


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _spec(tmp_path: Path) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    return str(path)


def _one_line_error(args: list[str], expect: str) -> str:
    result = CliRunner().invoke(app, args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.output, result.output
    assert expect in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def real_store(tmp_path_factory) -> bytes:
    """The bytes of a real MLflow SQLite store with one experiment."""
    db = tmp_path_factory.mktemp("store") / "mlruns.db"
    open_experiment(f"sqlite:///{db}", "kept")
    return db.read_bytes()


@pytest.mark.parametrize(
    "damage, expect",
    [
        (lambda data: b"\x00garbage" * 512, "is not a usable SQLite database (not a SQLite file)"),
        (lambda data: data[: len(data) // 2], "is not a usable SQLite database (truncated: "),
    ],
    ids=["overwritten", "truncated"],
)
def test_a_damaged_store_fails_in_one_line_before_ray_starts(tmp_path, real_store, damage, expect):
    db = tmp_path / "mlruns.db"
    db.write_bytes(damage(real_store))
    before = db.read_bytes()
    for args in (["launch", _spec(tmp_path)], ["run", "--steps", "1", "--out", str(tmp_path / "run")]):
        message = _one_line_error(args, expect)
        assert message.startswith(f"error: tracking.uri: {db} ")
    assert db.read_bytes() == before
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "run").exists()


def test_a_whole_store_passes_the_check(tmp_path, real_store):
    (tmp_path / "mlruns.db").write_bytes(real_store)
    result = CliRunner().invoke(app, ["launch", _spec(tmp_path), "--dry-run"])
    assert result.exit_code == 0, result.output


def test_storage_that_is_a_file(tmp_path):
    storage = tmp_path / "results"
    storage.write_text("not a directory")
    _one_line_error(["launch", _spec(tmp_path), "--storage", str(storage)], f"--storage {storage}: ")
    _one_line_error(
        ["launch", _spec(tmp_path), "--storage", str(storage / "below")], f"{storage} is a file; expected a directory"
    )
    assert storage.read_text() == "not a directory"


def test_storage_that_cannot_be_written(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with read_only(locked):
        message = _one_line_error(
            ["launch", _spec(tmp_path), "--storage", str(locked / "results")], f"--storage {locked / 'results'}: "
        )
        assert f"cannot write in {locked}" in message
        assert list(locked.iterdir()) == []
    assert not (tmp_path / "mlruns.db").exists()


def test_a_ray_older_than_token_auth_fails_in_one_line_before_anything_starts(tmp_path, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "__version__", "2.51.1")
    for args in (["launch", _spec(tmp_path)], ["launch", _spec(tmp_path), "--dry-run"]):
        _one_line_error(args, "error: ray 2.51.1 is installed; df-sweep needs ray 2.52 or newer (token authentication)")
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlruns.db").exists()


def test_the_packages_ray_bound_is_the_one_checked():
    pyproject = (Path(__file__).parents[3] / "pyproject.toml").read_text()
    assert f'"ray[tune]>={MIN_RAY}"' in pyproject
