"""The quick start, timed: a clean clone set up, the flagship sweep launched, and its report.

    python benchmarks/quickstart.py [--work DIR] [--skip-setup] [--set key=value ...]

Clones this checkout's HEAD into a fresh folder, runs `bash scripts/setup.sh` there (a new virtual environment; pip
needs its package index or a warm cache), then, in the clone, `df-sweep launch sweeps/timesteps.yaml` (the flagship:
5 timestep schedules × 3 prompts × 2 seeds = 30 trials of 400 steps) and `df-sweep report timesteps`, each timed
by the wall clock. `--skip-setup` uses this interpreter's environment instead of a new one (the setup then is not
timed); `--set` passes spec overrides to the launch (a smaller sweep; the page records the command). Prints a row
per step and, as its last line,
    setup_s=<s|skipped> launch_s=<s> report_s=<s> total_s=<s> trials=<n>
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_page import ResultsPage, add_arguments, commit, report_summary, runs_prior

ROOT = Path(__file__).resolve().parents[1]
SPEC = "sweeps/timesteps.yaml"
INTRO = """
The quick start on a clean clone: set up the environment, run the flagship sweep (`sweeps/timesteps.yaml`: 5
timestep schedules × 3 prompts × 2 seeds = 30 trials of 400 steps, two at a time on a 2-core machine), then its
report:

```bash
bash scripts/setup.sh && .venv/bin/df-sweep launch sweeps/timesteps.yaml
.venv/bin/df-sweep report timesteps
```
"""


def timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    """Wall seconds of `command`, its output appended to `log`; exits with its output's tail if it fails."""
    started = time.monotonic()
    with log.open("ab") as out:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"{' '.join(command)} exited with {done.returncode}:\n" + "\n".join(tail))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="folder of the clone (default: a new temporary one)")
    parser.add_argument("--skip-setup", action="store_true", help="use this environment; do not time the setup")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    add_arguments(parser)
    args = parser.parse_args()
    page = ResultsPage.from_args(args, "quickstart", "Quick start timing", INTRO)
    work = args.work or Path(tempfile.mkdtemp(prefix="quickstart_"))
    clone, log = work / "df-sweep", work / "quickstart.log"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    print(f"work: {work} (log {log})", flush=True)
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    times: dict[str, float | None] = {"setup": None}
    if args.skip_setup:  # this environment's df-sweep runs, and so this checkout's code
        bin_dir = Path(sys.executable).parent
    else:
        times["setup"] = timed(["bash", "scripts/setup.sh"], clone, env, log)
        bin_dir = clone / ".venv" / "bin"
        page.commit = commit(clone)  # the clone's own environment runs HEAD, without uncommitted changes
    launch = [str(bin_dir / "df-sweep"), "launch", SPEC, *(a for s in args.sets for a in ("--set", s))]
    times["launch"] = timed(launch, clone, env, log)
    times["report"] = timed([str(bin_dir / "df-sweep"), "report", "timesteps"], clone, env, log)
    kind, sha256 = runs_prior(f"sqlite:///{clone / 'mlruns.db'}", "timesteps")
    page.prior(kind, sha256)
    trials = sum(1 for _ in (clone / "report" / "trials.csv").open()) - 1
    labels = {
        "setup": "`scripts/setup.sh` (a new `.venv`)",
        "launch": f"`df-sweep launch {SPEC}{''.join(f' --set {s}' for s in args.sets)}` ({trials} trials)",
        "report": "`df-sweep report timesteps`",
    }
    total = sum(t for t in times.values() if t is not None)
    rows = [[labels[k], "not run (`--skip-setup`)" if t is None else _minutes(t)] for k, t in times.items()]
    page.table(["step", "wall time"], [*rows, ["**in all**", f"**{_minutes(total)}**"]])
    page.markdown("The report's summary:\n\n" + report_summary(clone / "report" / "report.md"))
    setup = "skipped" if times["setup"] is None else f"{times['setup']:.0f}"
    page.print(
        f"setup_s={setup} launch_s={times['launch']:.0f} report_s={times['report']:.0f} total_s={total:.0f} "
        f"trials={trials}"
    )
    page.write()


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {seconds % 60:.0f} s" if seconds >= 60 else f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
