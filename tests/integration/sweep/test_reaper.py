"""The embedded Ray's reaper with real processes and signals.

Without Ray: a stand-in driver starts the reaper and processes like Ray's (one that inherits the driver's marker
and ignores SIGTERM, like a worker; a "raylet" that inherits it and starts an "agent" whose environment is empty,
like Ray's agents, whose environment cannot be read), and one that is not Ray's (a bystander). The raylet dies
before the driver, as it does on Linux when the driver is killed, orphaning the agent. When the driver dies, or
stops its reaper itself, exactly Ray's go.

With Ray: a driver starts an embedded Ray the way a launch does (`embedded_ray`); once Ray's agents run it is
SIGKILLed, and no process of its Ray is alive 30 s later, and its token file is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_helpers import QUIET, wait_until
from process_helpers import alive, kill_all

from dreamfusion.tune.embedded import ray_temp_dir
from dreamfusion.tune.reaper import WATCH_S

SLEEP = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
DRIVER = f"""
import json, os, subprocess, sys, time
from pathlib import Path
from dreamfusion.tune.embedded import start_reaper, write_token
from dreamfusion.tune.reaper import MARKER_VAR

temp = Path(sys.argv[1])
token = write_token(temp / "auth_token_test")
sleep = [sys.executable, "-c", {SLEEP!r}]
raylet_code = (
    "import subprocess, sys, time; agent = subprocess.Popen(sys.argv[1:], env={{}}); "
    "print(agent.pid, flush=True); time.sleep(600)"
)
os.environ[MARKER_VAR] = "marker-" + str(os.getpid())
stop = start_reaper(os.environ[MARKER_VAR], token)
marked = subprocess.Popen(sleep)
raylet = subprocess.Popen([sys.executable, "-c", raylet_code, *sleep], stdout=subprocess.PIPE, text=True)
agent = int(raylet.stdout.readline())
del os.environ[MARKER_VAR]
bystander = subprocess.Popen(sleep)
pids = {{"marked": marked.pid, "raylet": raylet.pid, "agent": agent, "bystander": bystander.pid}}
print(json.dumps({{**pids, "token": str(token)}}), flush=True)
if sys.stdin.readline().strip() == "stop":
    stop()
    print("stopped", flush=True)
time.sleep(600)
"""
GONE_WITHIN_S = 30


@pytest.fixture
def driver(tmp_path):
    """The stand-in driver and what it started; every process stopped by PID at the end."""
    process = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started = json.loads(process.stdout.readline())
    token = Path(started.pop("token"))
    yield process, started, token
    kill_all({process.pid, *started.values()})
    process.wait()


def test_a_killed_driver_takes_exactly_its_ray_with_it(driver):
    process, started, token = driver
    time.sleep(4 * WATCH_S)  # the reaper has looked at the driver's processes
    assert all(alive(pid) for pid in started.values())  # nothing is touched while the driver lives
    assert token.stat().st_mode & 0o777 == 0o600
    os.kill(started["raylet"], signal.SIGKILL)  # on Linux, Ray's raylet dies with its driver, orphaning its agents
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    ray = [started["marked"], started["raylet"], started["agent"]]
    wait_until("the driver's Ray to go", lambda: not any(alive(pid) for pid in ray), GONE_WITHIN_S)
    assert alive(started["bystander"])
    assert not token.exists()


def test_a_driver_that_stops_its_reaper_itself_is_spared(driver):
    process, started, _ = driver
    time.sleep(4 * WATCH_S)
    process.stdin.write("stop\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "stopped"
    assert not any(alive(started[name]) for name in ("marked", "raylet", "agent"))
    assert alive(process.pid) and alive(started["bystander"])


RAY_DRIVER = """
import json, sys, time
import psutil
from dreamfusion.tune.embedded import embedded_ray

with embedded_ray(sys.argv[1]):
    def agents_running():
        below = psutil.Process().children(recursive=True)
        return below if any("RuntimeEnvAgent" in " ".join(p.cmdline()) for p in below) else None
    deadline = time.monotonic() + 120
    while not (below := agents_running()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)  # the reaper looks every 0.5 s
    below = psutil.Process().children(recursive=True)
    # whole command lines: under a long venv path a process's name comes after its 80th character
    print(json.dumps({p.pid: " ".join(p.cmdline()) for p in below}), flush=True)
    time.sleep(600)
"""


@pytest.fixture
def ray_driver(tmp_path):
    """A driver with an embedded Ray, and every process below it (its reaper included), by PID; all stopped by PID
    at the end."""
    root = tmp_path / "r"
    process = subprocess.Popen(
        [sys.executable, "-c", RAY_DRIVER, str(root)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **QUIET},
    )
    below = {int(pid): command for pid, command in json.loads(process.stdout.readline()).items()}
    yield process, below, root
    kill_all({process.pid, *below})
    process.wait()
    shutil.rmtree(ray_temp_dir(root), ignore_errors=True)  # Ray's session files, outside tmp_path when its path is long


def test_a_killed_driver_leaves_no_process_of_its_embedded_ray(ray_driver):
    process, below, root = ray_driver
    assert any("raylet" in command for command in below.values()), below
    assert any("Agent" in command for command in below.values()), below
    token = ray_temp_dir(root) / f"auth_token_{process.pid}"
    assert token.exists()
    assert list(ray_temp_dir(root).glob(f"session_*_{process.pid}"))  # Ray took its temp dir (ray.init's _temp_dir)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    try:
        wait_until("the killed driver's Ray to go", lambda: not any(map(alive, below)), GONE_WITHIN_S)
    except TimeoutError:
        pass
    assert {pid: command for pid, command in below.items() if alive(pid)} == {}
    assert not token.exists()
