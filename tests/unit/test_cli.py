"""The command line's own surface: --version, shell completion, flags without double negatives, `status --json`,
`resume --tracking-uri`, and a bad --storage as one line. What each command does is tested with its library."""

from __future__ import annotations

import json
from importlib.metadata import version
from types import SimpleNamespace

import pytest
import typer
from typer.testing import CliRunner

from dreamfusion.cli import app
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tune import launch as launch_module
from dreamfusion.tune import results
from dreamfusion.tune.results import TrialRow
from dreamfusion.tune.storage import Launch


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def _options(command: object) -> list[str]:
    return [name for p in command.params for name in [*p.opts, *p.secondary_opts]]  # type: ignore[attr-defined]


def test_version_prints_the_installed_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"df-sweep {version('df-sweep')}"


def test_shell_completion_is_offered():
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_no_flag_is_a_double_negative():
    root = typer.main.get_command(app)
    commands = [root, *(root.get_command(None, n) for n in root.list_commands(None))]  # type: ignore[attr-defined]
    toyworld = root.get_command(None, "toyworld")  # type: ignore[attr-defined]
    commands += [toyworld.get_command(None, n) for n in toyworld.list_commands(None)]
    doubled = [(c.name, o) for c in commands for o in _options(c) if o.startswith("--no-no-")]
    assert doubled == []
    assert {"--tracking", "--no-tracking"} <= set(_options(root.get_command(None, "run")))  # type: ignore[attr-defined]


def _fake_launch(tmp_path, rows):
    launch = SimpleNamespace(experiment_dir=str(tmp_path / "ray_results" / "a" / "L1"))
    launch.sweep = SimpleNamespace(tune=SimpleNamespace(metric="clip_r_precision"))
    return launch, rows


def test_status_json_is_one_object_with_the_launch_and_its_trials(tmp_path, monkeypatch):
    rows = [
        TrialRow("t1", "TERMINATED", {"seed": 0}, 0.5, 10),
        TrialRow("t2", "ERROR", {"seed": 1}, None, None),
    ]
    launch, _ = _fake_launch(tmp_path, rows)
    (tmp_path / "ray_results").mkdir()
    monkeypatch.setattr(results, "sweep_names", lambda root: ["a"])
    monkeypatch.setattr(results, "load_launch", lambda name, storage: launch)
    monkeypatch.setattr(results, "stored_rows", lambda launch: (rows, ""))
    result = CliRunner().invoke(app, ["status", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found["storage"] == str(tmp_path / "ray_results")
    (sweep,) = found["sweeps"]
    assert sweep["name"] == "a" and sweep["experiment_dir"] == launch.experiment_dir
    assert sweep["states"] == {"TERMINATED": 1, "ERROR": 1}
    assert sweep["trials"][0] == {
        "trial_id": "t1",
        "state": "TERMINATED",
        "values": {"seed": 0},
        "metric": 0.5,
        "step": 10,
    }
    assert sweep["metric"] == "clip_r_precision" and sweep["problem"] is None


@pytest.mark.parametrize("command", ["status", "resume"])
@pytest.mark.parametrize(("storage", "expect"), [("foo://x", "Unrecognized filesystem"), ("afile", "is a file")])
def test_a_bad_storage_is_one_line(tmp_path, command, storage, expect):
    (tmp_path / "afile").write_text("x")
    args = [command, "--storage", storage] if command == "status" else [command, "a", "--storage", storage]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert expect in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_resume_takes_a_tracking_uri_that_must_hold_the_parent_run(tmp_path, monkeypatch):
    spec = {"name": "a", "space": {"seed": {"grid": [0, 1]}}}
    recorded = Launch(spec, str(tmp_path / "L1"), TrialTracker("sqlite:///gone/mlruns.db", "1", "parent123"))
    monkeypatch.setattr(launch_module, "load_launch", lambda name, storage: recorded)
    monkeypatch.setattr(Launch, "resumable", lambda self: True)
    args = ["resume", "a", "--tracking-uri", "sqlite:///moved.db"]
    _one_error(CliRunner().invoke(app, args), "no MLflow store at")
    assert not (tmp_path / "moved.db").exists()
    (tmp_path / "moved.db").write_bytes(b"")  # a store, empty: it holds no run of the launch
    result = CliRunner().invoke(app, args)  # MLflow logs that it makes the tables of the fresh store first
    assert result.exit_code == 2, result.output
    assert f"error: --tracking-uri sqlite:///{tmp_path / 'moved.db'}: holds no run parent123" in result.output


@pytest.mark.parametrize(
    ("args", "source"),
    [
        (["run", "--steps", "0", "--no-tracking"], "--steps: steps:"),
        (["run", "--set", "steps=0", "--no-tracking"], "--set: steps:"),
        (["schedules", "--steps", "0"], "--steps: steps:"),
        (["run", "--prompt", "", "--no-tracking"], "--prompt: prompt:"),
    ],
)
def test_an_error_names_the_option_its_value_came_from(args, source):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {source} ")


def test_an_unknown_speedups_value_is_refused(monkeypatch):
    monkeypatch.setenv("DF_SWEEP_SPEEDUPS", "no")
    result = CliRunner().invoke(app, ["run", "--steps", "1", "--no-tracking"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: DF_SWEEP_SPEEDUPS=no: expected one of on, 1, true, off, 0, false"


def test_ui_refuses_a_file_store_as_one(tmp_path):
    result = CliRunner().invoke(app, ["ui", "--tracking-uri", "file:///x"])
    assert result.exit_code == 2
    assert "file:///x is a file store" in result.output and "server already" not in result.output


def test_ui_port_0_announces_the_port_bound(tmp_path, monkeypatch):
    from dreamfusion.tracking import server

    started = []

    class Child:
        pid = 1

        def __init__(self, command, **kwargs):
            started.append(command)

        def wait(self):
            return 0

    (tmp_path / "mlruns.db").write_bytes(b"")
    monkeypatch.setattr(server.subprocess, "Popen", Child)
    monkeypatch.setattr(server, "experiment_links", lambda uri, base: [])
    monkeypatch.setattr(server.signal, "signal", lambda *a: None)
    result = CliRunner().invoke(app, ["ui", "--port", "0"])
    assert result.exit_code == 0, result.output
    port = started[0][started[0].index("--port") + 1]
    assert port != "0" and f"http://127.0.0.1:{port} " in result.output


def test_unreadable_weights_name_the_cause(tmp_path):
    from dreamfusion.errors import ConfigError
    from dreamfusion.export.weights import load_weights

    (tmp_path / "field.pt").write_text("hello")
    with pytest.raises(ConfigError, match=r"cannot read field weights \(not a file torch.save wrote: no zip archive"):
        load_weights(tmp_path / "field.pt")


def _one_error(result, expect: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and expect in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_export_never_writes_into_a_directory_holding_files(tmp_path):
    (tmp_path / "D").mkdir()
    (tmp_path / "D" / "views.png").write_text("another run's")
    (tmp_path / "field.pt").write_text("hello")
    _one_error(CliRunner().invoke(app, ["export", "field.pt", "--out", "D"]), "--out D: holds files already")
    assert (tmp_path / "D" / "views.png").read_text() == "another run's"


@pytest.mark.parametrize("existing", [False, True])
def test_a_failed_export_leaves_no_debris(tmp_path, existing):
    (tmp_path / "field.pt").write_text("hello")
    if existing:
        (tmp_path / "D").mkdir()
    _one_error(CliRunner().invoke(app, ["export", "field.pt", "--out", "D"]), "cannot read field weights")
    assert list(tmp_path.iterdir()) == [tmp_path / "field.pt", *([tmp_path / "D"] if existing else [])]
    assert not existing or list((tmp_path / "D").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--resume"], "--resume: continues the run in --out"),
        (["--resume", "--out", "new"], "--resume: new holds no run to continue"),
        (["--set", "device=mps"], "device: mps: this machine has no MPS device"),
    ],
)
def test_a_refused_run_leaves_no_run_directory(tmp_path, args, expect):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has the device")
    _one_error(CliRunner().invoke(app, ["run", "--no-tracking", "--steps", "1", *args]), expect)
    assert list(tmp_path.iterdir()) == []


def test_run_on_cuda_without_it_is_refused_before_its_directory(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = CliRunner().invoke(app, ["run", "--no-tracking", "--steps", "1", "--set", "device=cuda"])
    _one_error(result, "device: cuda: this machine has no CUDA device")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["--minutes", "-1"], "--minutes: expected a budget above 0, got -1.0"),
        (["--minutes", "0"], "--minutes: expected a budget above 0"),
        (["--threads", "0"], "--threads: expected 1 or more, got 0"),
        (["--front-bias", "2"], "--front-bias: expected a share from 0 to 1"),
    ],
)
def test_toyworld_train_bounds_its_counts(tmp_path, args, expect):
    _one_error(CliRunner().invoke(app, ["toyworld", "train", "--out", "tw", *args]), expect)
    assert not (tmp_path / "tw").exists()


def test_toyworld_train_never_overwrites_a_directory_holding_files(tmp_path):
    (tmp_path / "tw").mkdir()
    (tmp_path / "tw" / "config.json").write_text("theirs")
    result = CliRunner().invoke(app, ["toyworld", "train", "--out", "tw", "--minutes", "1"])
    _one_error(result, "--out tw: holds files already; pass --resume")
    assert (tmp_path / "tw" / "config.json").read_text() == "theirs"


def test_an_export_whose_fetched_weights_fail_leaves_no_debris(tmp_path, monkeypatch):
    """Weights fetched from MLflow go to a temporary folder, not `--out/.source`, and a failure removes `--out`."""
    import dreamfusion.export_run as export_run

    def fetched(value, uri, dest, key):
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "field.pt").write_text("hello")
        return dest / "field.pt"

    monkeypatch.setattr(export_run, "resolve_source", fetched)
    (tmp_path / "mlruns.db").write_bytes(b"")  # a store to fetch from (an empty file is a fresh SQLite database)
    result = CliRunner().invoke(app, ["export", "0" * 32, "--out", "D"])
    _one_error(result, "cannot read field weights")
    assert not (tmp_path / "D").exists()


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


READERS = [
    ["report", "x", "--out", "R"],
    ["gc", "x", "--keep-best", "1"],
    ["export", "0123456789abcdef0123456789abcdef", "--out", "E"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("uri", "expect"),
    [
        ("sqlite:///notes.db", "is not a usable SQLite database (not a SQLite file)"),
        ("file:///{tmp}/fs", "is a file store, which MLflow keeps in maintenance mode"),
        ("http://127.0.0.1:{port}", "cannot reach an MLflow server"),
        (None, "no MLflow store at"),
    ],
    ids=["text-file", "file-store", "no-server", "no-store"],
)
def test_every_command_that_reads_a_store_checks_it_first(tmp_path, command, uri, expect):
    import time

    (tmp_path / "notes.db").write_text("not a database")
    args = [*command, *(["--tracking-uri", uri.format(tmp=tmp_path, port=_closed_port())] if uri else [])]
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    _one_error(result, expect)
    assert time.monotonic() - started < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db"]  # no mlruns.db, no --out


def test_ui_checks_a_sqlite_store_is_a_database(tmp_path):
    (tmp_path / "mlruns.db").write_text("not a database")
    _one_error(CliRunner().invoke(app, ["ui"]), "is not a usable SQLite database (not a SQLite file)")


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["export", "field.pt", "--out", "E", "--samples", "0"], "--samples: expected 1 to 1024, got 0"),
        (["export", "field.pt", "--out", "E", "--resolution", "100000"], "--resolution: expected 16 to 4096"),
        (["toyworld", "card", "--views", "0"], "--views: expected 1 or more, got 0"),
        (["toyworld", "card", "--eta", "2"], "--eta: expected 0 to 1, got 2.0"),
        (["schedules", "--out", "afile"], "--out afile: is a file; expected a directory"),
        (["toyworld", "train", "--out", "afile"], "--out afile: is a file; expected a directory"),
    ],
)
def test_counts_sizes_and_out_paths_are_bounded_in_one_line(tmp_path, args, expect):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "field.pt").write_text("x")
    _one_error(CliRunner().invoke(app, args), expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "field.pt"]
