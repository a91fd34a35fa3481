"""Soak test of a sweep under faults: a ~100-trial tiny sweep with trial workers SIGKILLed at seeded random moments
and the driver SIGKILLed once, then `df-sweep resume`; what MLflow holds at the end is counted.

    python benchmarks/soak.py [--seed S] [--trials 100] [--worker-kills 3] [--out DIR]

About 10 minutes on 2 cores; not in CI. Real processes only: `df-sweep launch` and `df-sweep resume` as
subprocesses on an embedded Ray, MLflow on SQLite, the shipped toy-world prior. Each kill happens at a random
moment (drawn from --seed) once a random number of trials has finished, to a random trial worker running then.
After the driver's kill, every process of its launch must be gone within 30 s (`orphans` below), then `resume`
finishes the sweep. Last line:
    trials=<n> finished=<n> lost=<n> duplicate_runs=<n> orphaned_running=<n> duplicate_steps=<n> kills=<n>
lost: trials of the spec without a FINISHED run; duplicate_runs: extra runs of one trial; orphaned_running: runs
left RUNNING; duplicate_steps: metric points logged twice at one step of one run (`system/` samples aside: those
are taken every few seconds, several at one step). All but trials, finished and kills must be 0.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import yaml
from results_page import ResultsPage, add_arguments, runs_prior

ROOT = Path(__file__).resolve().parents[1]
Echo = Callable[[str], None]
BIN = Path(sys.executable).parent
PROMPTS = ["a red cube", "a blue sphere", "a green cone", "a yellow torus"]
#: A tiny trial: four evals and checkpoints, so a killed trial resumes mid-way.
BASE = {
    "steps": 40,
    "checkpoint_every": 10,
    "nerf": {"size": "tiny"},
    "render": {"resolution": 16, "samples_per_ray": 16, "views_per_step": 1},
    "eval": {"every": 10, "views": 2, "turntable_frames": 2},
}
INTRO = """
A sweep of tiny trials under faults: trial workers SIGKILLed at seeded random moments and the driver SIGKILLed once,
then `df-sweep resume`; what MLflow holds at the end is counted. Every count but trials, finished and kills must be 0:
no trial lost or run twice, no run left RUNNING, no metric logged twice at one step; and no process of the killed
launch may be alive 30 s after its driver's kill.
"""
ORPHAN_WAIT_S = 30
#: A resume that fails (Ray's memory monitor stopping Tune on a node others fill) is run again, up to this often.
MAX_RESUMES = 3
TIMEOUT_S = 1800


def write_spec(folder: Path, trials: int) -> Path:
    seeds = -(-trials // len(PROMPTS))
    spec = {
        "name": "soak",
        "base": BASE,
        "space": {"prompt": {"grid": PROMPTS}, "seed": {"grid": list(range(seeds))}},
        "tune": {"metric": "clip_score"},
        "resources": {"cpu": 1},
        "max_failures": 3,
    }
    path = folder / "soak.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


class Driver:
    """A `df-sweep` command in its own session, every process it starts marked by SOAK_ID in its environment."""

    def __init__(self, args: list[str], folder: Path, soak_id: str) -> None:
        self.log = folder / f"{args[0]}.log"
        env = {**os.environ, "SOAK_ID": soak_id, "PYTHONUNBUFFERED": "1", "RAY_USAGE_STATS_ENABLED": "0"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "df-sweep"), *args], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip

    def running(self) -> bool:
        return self.proc.poll() is None


def marked(soak_id: str) -> dict[int, str]:
    """pid → command line of every live process (zombies aside) whose environment carries SOAK_ID=soak_id."""
    needle = f"SOAK_ID={soak_id}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in environ and state != "Z":
            found[int(entry)] = cmdline
    return found


def trial_workers(soak_id: str) -> list[int]:
    """Ray worker processes running a trial now (Ray names a busy actor's process after its method)."""
    return sorted(pid for pid, cmd in marked(soak_id).items() if cmd.startswith("ray::") and ".train" in cmd)


def finished_trials(db: Path) -> int:
    """FINISHED child runs so far, read straight from the SQLite store while the sweep writes it."""
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
                "WHERE t.key = 'mlflow.parentRunId' AND r.status = 'FINISHED'"
            ).fetchone()
    except sqlite3.Error:  # the schema is not there yet, or the store is busy: ask again later
        return 0
    return int(row[0])


def kill_a_worker(driver: Driver, soak_id: str, rng: random.Random, db: Path, after: int, echo: Echo) -> bool:
    """Once `after` trials have finished, wait a random moment, then SIGKILL a random trial worker."""
    while driver.running() and finished_trials(db) < after:
        time.sleep(0.5)
    time.sleep(rng.uniform(0.5, 3.0))
    while driver.running():
        workers = trial_workers(soak_id)
        if workers:
            victim = rng.choice(workers)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:  # its trial ended between the listing and the kill: draw again
                continue
            echo(f"  killed trial worker {victim} after {finished_trials(db)} finished trials")
            return True
        time.sleep(0.2)
    return False


def kill_the_driver(
    driver: Driver, soak_id: str, rng: random.Random, db: Path, after: int, echo: Echo
) -> tuple[bool, int]:
    """SIGKILL the driver alone once `after` trials have finished; returns whether it was killed (it may have ended
    by itself before) and how many of its processes are still alive ORPHAN_WAIT_S later (then killed here, by
    PID)."""
    while driver.running() and finished_trials(db) < after:
        time.sleep(0.5)
    time.sleep(rng.uniform(0.5, 3.0))
    killed = driver.running()
    if killed:
        os.kill(driver.proc.pid, signal.SIGKILL)
    driver.proc.wait()
    what = "killed the driver" if killed else f"the driver had ended by itself (exit code {driver.proc.returncode})"
    echo(f"  {what} {driver.proc.pid} after {finished_trials(db)} finished trials: {last_line(driver)}")
    deadline = time.monotonic() + ORPHAN_WAIT_S
    while marked(soak_id) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = marked(soak_id)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return killed, len(left)


def last_line(driver: Driver) -> str:
    lines = driver.log.read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


def counts(db: Path, spec_trials: list[str]) -> dict[str, int]:
    from mlflow import MlflowClient

    from dreamfusion.tracking.schema import SYSTEM_PREFIX

    client = MlflowClient(f"sqlite:///{db}")
    experiment = client.get_experiment_by_name("soak")
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    per_trial = Counter(r.info.run_name for r in children)
    done = {r.info.run_name for r in children if r.info.status == "FINISHED"}
    duplicate_steps = 0
    for run in children:
        # system/ metrics are samples in time, tagged with the step they were taken at: several per step is right
        for key in (k for k in run.data.metrics if not k.startswith(SYSTEM_PREFIX)):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            duplicate_steps += len(steps) - len(set(steps))
    return {
        "finished": sum(name in done for name in spec_trials),
        "lost": sum(name not in done for name in spec_trials),
        "duplicate_runs": sum(n - 1 for n in per_trial.values()),
        "orphaned_running": sum(r.info.status == "RUNNING" for r in runs),
        "duplicate_steps": duplicate_steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--worker-kills", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the sweep's folder here")
    add_arguments(parser)
    args = parser.parse_args()
    page = ResultsPage.from_args(args, "soak", "Soak: kills and resume at scale", INTRO)
    page.condition("peak memory counts", "this script and the df-sweep drivers it waited for, not Ray's workers")
    rng = random.Random(args.seed)
    folder = args.out or Path(tempfile.mkdtemp(prefix="soak_"))
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from dreamfusion.console.table import run_name
    from dreamfusion.sweep.validate import load_spec

    spec = load_spec(write_spec(folder, args.trials))
    spec_trials = [run_name(point) for point in spec.grid_points()]
    db, soak_id = folder / "mlruns.db", uuid.uuid4().hex
    n = len(spec_trials)
    # the moments of the kills, as numbers of finished trials: workers before and after the driver's kill
    driver_at = rng.randint(n // 3, n // 2)
    worker_at = sorted(rng.randint(n // 10, n - n // 10) for _ in range(args.worker_kills))
    page.print(f"soak: {n} trials in {folder.name}; seed {args.seed}; worker kills after {worker_at} finished "
               f"trials, the driver's after {driver_at}")  # fmt: skip
    started, kills = time.monotonic(), 0
    driver = Driver(["launch", str(folder / "soak.yaml")], folder, soak_id)
    for after in (a for a in worker_at if a < driver_at):
        kills += kill_a_worker(driver, soak_id, rng, db, after, page.print)
    killed, orphans = kill_the_driver(driver, soak_id, rng, db, driver_at, page.print)
    kills += killed
    pending = [a for a in worker_at if a >= driver_at]
    for resumes in range(1, MAX_RESUMES + 1):
        resumed = Driver(["resume", "soak"], folder, soak_id)
        while pending and kill_a_worker(resumed, soak_id, rng, db, pending[0], page.print):
            kills += 1
            pending.pop(0)
        code = resumed.proc.wait(timeout=TIMEOUT_S)
        if code == 0:
            break
        page.print(f"  resume {resumes} ended with exit code {code}: {last_line(resumed)}")
    wall = time.monotonic() - started
    result = counts(db, spec_trials)
    load = os.getloadavg()
    page.prior(*runs_prior(f"sqlite:///{db}", "soak"))
    page.print(f"resume exit code {code} after {resumes} resume(s); wall {wall:.0f} s; processes of the killed launch "
               f"alive {ORPHAN_WAIT_S} s after its driver's kill: {orphans}; load average {load[0]:.2f} {load[1]:.2f} "
               f"{load[2]:.2f}")  # fmt: skip
    page.print(
        f"trials={n} finished={result['finished']} lost={result['lost']} duplicate_runs={result['duplicate_runs']} "
        f"orphaned_running={result['orphaned_running']} duplicate_steps={result['duplicate_steps']} kills={kills}"
    )
    page.write()


if __name__ == "__main__":
    main()
