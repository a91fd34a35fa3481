"""The embedded Ray's reaper with real processes and signals, without Ray: a stand-in driver starts the reaper and
processes like Ray's (one that inherits the driver's marker, one that does not but writes to the driver's Ray
session and ignores SIGTERM, like the agents that outlived a killed driver), and two that are not Ray's (a reader
of the session's log, a bystander). When the driver dies, or stops its reaper itself, exactly Ray's go."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_helpers import wait_until
from process_helpers import alive, kill_all

DRIVER = """
import json, os, subprocess, sys, time
from pathlib import Path
from dreamfusion.tune.embedded import start_reaper, write_token
from dreamfusion.tune.reaper import MARKER_VAR

temp = Path(sys.argv[1])
logs = temp / f"session_2026-01-01_00-00-00_000000_{os.getpid()}" / "logs"
logs.mkdir(parents=True)
token = write_token(temp / "auth_token_test")
sleep = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"]
os.environ[MARKER_VAR] = "marker-" + str(os.getpid())
stop = start_reaper(os.environ[MARKER_VAR], temp, token)
marked = subprocess.Popen(sleep)
del os.environ[MARKER_VAR]
agent = subprocess.Popen(sleep, stdout=(logs / "agent.out").open("w"))
reader = subprocess.Popen(["tail", "-f", str(logs / "agent.out")], stdout=subprocess.DEVNULL)
bystander = subprocess.Popen(sleep)
pids = {"marked": marked.pid, "agent": agent.pid, "reader": reader.pid, "bystander": bystander.pid}
print(json.dumps({**pids, "token": str(token)}), flush=True)
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
    time.sleep(1)
    assert all(alive(pid) for pid in started.values())  # nothing is touched while the driver lives
    assert token.stat().st_mode & 0o777 == 0o600
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    ray = [started["marked"], started["agent"]]
    wait_until("the driver's Ray to go", lambda: not any(alive(pid) for pid in ray), GONE_WITHIN_S)
    assert alive(started["reader"]) and alive(started["bystander"])
    assert not token.exists()


def test_a_driver_that_stops_its_reaper_itself_is_spared(driver):
    process, started, _ = driver
    process.stdin.write("stop\n")
    process.stdin.flush()
    assert process.stdout.readline().strip() == "stopped"
    assert not alive(started["marked"]) and not alive(started["agent"])
    assert alive(process.pid) and alive(started["bystander"])
