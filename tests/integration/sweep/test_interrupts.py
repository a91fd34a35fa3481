"""A sweep interrupted at the worst moments, by real signals to real `df-sweep` processes on an embedded Ray:

- Ctrl-C in a launch's first seconds, before Tune saved any state: `resume` and `status` say "nothing to resume:
  launch it again" in one line, and `status` still lists the other sweeps;
- the driver SIGKILLed mid-sweep: 30 s later no process of that launch is alive (the reaper), and `resume`
  finishes the sweep;
- and while that launch ran, nothing it started listened beyond loopback, and its Ray refused clients without
  its token (probed on 127.0.0.1 only: these tests send nothing to any other address).

The drivers run with RAY_AUTH_MODE=disabled in their environment (cluster_helpers.QUIET), which the embedded Ray
must override.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cluster_helpers import Service, df_sweep, finished, wait_until
from process_helpers import alive, command, descendants, environ, is_loopback, kill_all, listeners
from sweep_helpers import TINY_BASE, set_args, sweep_runs, write_spec
from typer.testing import CliRunner

from dreamfusion.cli import app

SMOKE = Path(__file__).parents[3] / "sweeps" / "smoke.yaml"
#: sweeps/smoke.yaml, its trials as short as the tests' tiny trial
SMOKE_FAST = set_args(
    base__steps=TINY_BASE["steps"],
    base__checkpoint_every=4,
    base__eval__every=4,
    base__eval__views=2,
    base__eval__turntable_frames=2,
    base__render__resolution=16,
    base__render__samples_per_ray=16,
)
REAPED_WITHIN_S = 30


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("interrupts")
    (path / "markers").mkdir()
    return path


@pytest.fixture(scope="module")
def drivers():
    """Every `df-sweep` process a test starts, and every process below it: stopped by PID at the end."""
    started: list[Service] = []
    below: set[int] = set()
    yield started, below
    for driver in started:
        driver.stop()
    kill_all(below)


def _start(workdir: Path, drivers, *args: str) -> Service:
    """`df-sweep ARGS` in `workdir`, its trials held at step 6 the first time (DF_TEST_HOLD_SEEDS=0)."""
    env = {
        "DF_TEST_MARKERS": str(workdir / "markers"),
        "DF_SWEEP_CACHE": str(workdir / "cache"),
        "DF_TEST_HOLD_SEEDS": "0",
    }
    driver = df_sweep(list(args), workdir, "sweep_helpers.faulty_world", env)
    drivers[0].append(driver)
    return driver


def _cli(workdir: Path, *args: str):
    return CliRunner().invoke(app, [*args, "--storage", str(workdir / "ray_results")])


def _uri(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'mlruns.db'}"


@pytest.fixture(scope="module")
def early(workdir, drivers):
    """A launch Ctrl-C'd as soon as it has recorded itself, before Tune saved any state of its own."""
    spec = write_spec(workdir / "early.yaml", "early", {"seed": {"grid": [0, 1]}})
    driver = _start(workdir, drivers, "launch", str(spec), "--tracking-uri", _uri(workdir))

    def recorded() -> Path | None:
        if driver.proc.poll() is not None:
            raise AssertionError(f"the launch ended before it recorded itself:\n{driver.tail()}")
        return next(workdir.glob("ray_results/early/*/df_sweep.json"), None)

    record = wait_until("the launch record", recorded, 300, 0.005)
    os.killpg(driver.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the driver's whole process group
    code, output = finished(driver, 120)
    return record.parent, code, output


def test_ctrl_c_before_tunes_first_save_ends_in_one_line_with_nothing_to_resume(early, workdir):
    launch_dir, code, output = early
    assert code != 0 and "Traceback" not in output, output
    # the moment the issue reproduced: Tune had saved no trial state yet
    assert not list(launch_dir.glob("experiment_state-*.json")), sorted(p.name for p in launch_dir.iterdir())
    resumed = _cli(workdir, "resume", "early")
    assert resumed.exit_code != 0
    assert resumed.output.strip().splitlines() == [
        f"error: early: nothing to resume: launch it again ({launch_dir} stopped before Tune saved its state)"
    ]
    status = _cli(workdir, "status", "early")
    assert status.exit_code == 0
    assert status.output.strip().splitlines() == [f"early  ({launch_dir}): nothing to resume: launch it again"]
    parents, children = sweep_runs(_uri(workdir), "early")
    assert [p.info.status for p in parents] == ["FAILED"]
    assert parents[0].data.tags["df.failure"] == "interrupted; nothing to resume: launch it again"
    assert all(run.info.status != "RUNNING" for run in children)


@pytest.fixture(scope="module")
def killed(workdir, drivers, early):
    """sweeps/smoke.yaml launched, probed while its first trials are held at step 6, then its driver SIGKILLed
    alone; what it ran and exposed, and which of its processes were alive 30 s later."""
    driver = _start(workdir, drivers, "launch", str(SMOKE), *SMOKE_FAST, "--tracking-uri", _uri(workdir))

    def held() -> bool:
        if driver.proc.poll() is not None:
            raise AssertionError(f"the launch ended before a trial was held:\n{driver.tail()}")
        return any((workdir / "markers").glob("*.held"))

    wait_until("a held trial", held, 300, 0.2)
    processes = descendants(driver.pid)
    drivers[1].update(processes)
    seen = {
        "listeners": listeners(processes),
        "gcs": next(p for p in processes if command(p).split()[0].endswith("gcs_server")),
        "runtime_env_agent": next(p for p in processes if "RuntimeEnvAgent" in command(p)),
    }
    seen["gcs_env"] = environ(seen["gcs"])
    seen["probes"] = _probes(seen)
    os.kill(driver.pid, signal.SIGKILL)
    driver.proc.wait()
    try:
        wait_until("the killed launch's processes to go", lambda: not any(map(alive, processes)), REAPED_WITHIN_S)
    except TimeoutError:
        pass
    seen["alive"] = {pid: command(pid) for pid in processes if alive(pid)}
    return seen


def _probes(seen: dict) -> dict[str, str]:
    """What a client gets from the GCS over 127.0.0.1 with no token, a wrong one and the right one; and what an
    HTTP client without a token gets from the runtime-env agent."""
    env = seen["gcs_env"]
    gcs_port = next(port for pid, _, port in seen["listeners"] if pid == seen["gcs"])
    query = (
        "import sys; from ray._raylet import GcsClient; "
        "print(len(GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10)))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    results = {}
    for label, auth in (
        ("none", {"RAY_AUTH_MODE": "disabled"}),
        ("wrong", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}),
        ("right", {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": env["RAY_AUTH_TOKEN_PATH"]}),
    ):
        done = subprocess.run(
            [sys.executable, "-c", query, f"127.0.0.1:{gcs_port}"],
            env={**clean, **auth},
            capture_output=True,
            text=True,
            timeout=120,
        )
        results[label] = done.stdout.strip() if done.returncode == 0 else done.stderr.strip().splitlines()[-1]
    agent_port = next(port for pid, _, port in seen["listeners"] if pid == seen["runtime_env_agent"])
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{agent_port}/", timeout=10)
        results["http"] = "answered"
    except urllib.error.HTTPError as exc:
        results["http"] = str(exc.code)
    return results


def test_the_embedded_ray_listens_on_loopback_only(killed):
    assert killed["listeners"], "found no listening socket: the check would pass vacuously"
    exposed = [(command(pid) or pid, address, port) for pid, address, port in killed["listeners"]]
    assert all(is_loopback(address) for _, address, _ in killed["listeners"]), exposed


def test_the_embedded_ray_refuses_clients_without_its_token(killed):
    env = killed["gcs_env"]
    assert env["RAY_AUTH_MODE"] == "token"  # set by df-sweep over the driver's RAY_AUTH_MODE=disabled
    token = Path(env["RAY_AUTH_TOKEN_PATH"])
    assert not token.exists()  # the reaper removed the dead session's token
    probes = killed["probes"]
    assert probes["right"] == "1", probes  # the probe works: with the token, the one node is listed
    assert "AuthenticationError" in probes["none"] and "AuthenticationError" in probes["wrong"], probes
    assert probes["http"] == "401", probes


def test_no_process_of_a_killed_driver_is_alive_30_s_later(killed):
    assert killed["alive"] == {}


def test_status_lists_every_sweep_and_resume_finishes_the_killed_one(workdir, drivers, killed, early):
    status = _cli(workdir, "status")
    assert status.exit_code == 0, status.output
    lines = status.output.strip().splitlines()
    assert lines[0] == f"early  ({early[0]}): nothing to resume: launch it again"
    # what Tune saved last before the kill: its trials pending or running, none finished
    assert re.fullmatch(r"smoke  \(.*\): (\d (PENDING|RUNNING)(, )?)+", lines[1]), lines
    (workdir / "markers" / "release").touch()
    code, output = finished(_start(workdir, drivers, "resume", "smoke"), 300)
    assert code == 0, output
    assert "trials: 4 TERMINATED" in output and "Traceback" not in output
    parents, children = sweep_runs(_uri(workdir), "smoke")
    assert [p.info.status for p in parents] == ["FINISHED"]
    assert len(children) == 4 and {run.info.status for run in children} == {"FINISHED"}
    assert sorted(run.info.run_name for run in children) == sorted(
        f"prompt={p},schedule={s}" for p in ("a red cube", "a blue sphere") for s in ("uniform", "anneal")
    )
