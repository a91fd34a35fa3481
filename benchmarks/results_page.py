"""The results page of a measuring script: `docs/results/<page>.md`, written by the script that measures it.

A script makes a `ResultsPage` before it measures (the commit, the load average and the clock are taken then), prints
its result lines through `page.print` (they go to the terminal and into the page), adds Markdown tables and figures,
names the prior it measured with `page.prior`, and calls `page.write()` last. The page starts with a YAML front-matter
block that the documentation site reads (its hook, `docs/hooks/stale.py`, marks a page measured on another toy-world
prior than the shipped one as stale):

    generated_by: benchmarks/<script>.py      # the script that wrote it
    command: python benchmarks/<script>.py …  # the exact command line
    commit: <git HEAD>[+dirty]                # +dirty: the tracked files differed from HEAD
    prior: toyworld | analytic | none | …     # the prior kind measured ("none": no prior was involved)
    prior_sha256: <hex> | null                # the prior's weights as loaded (`Prior.fingerprint`, the runs' tag)
    load_average: {before: [1, 5, 15 min], after: [...]}
    peak_memory_mb: …                         # this process, or what the script measured (Ray workers)
    wall_s: …

then the same in a provenance table, the script's Markdown and its output. Figures are copied into
`docs/results/img/`. Every file is written to a temporary name and renamed, so a page is never half written.

Scripts in `benchmarks/` import it by name (Python puts a script's folder first on the path); others add the folder.
`--results-dir DIR` writes elsewhere (tests), `--no-page` writes nothing.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
IMAGES = "img"
#: The `prior` of a measurement that involved no prior.
NO_PRIOR = "none"
#: Terminal colour codes (Ray colours its workers' log prefixes): kept on the terminal, not on the page.
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--results-dir` and `--no-page`, for the script's own parser."""
    parser.add_argument("--results-dir", type=Path, default=RESULTS, help="where the results page goes")
    parser.add_argument("--no-page", dest="page", action="store_false", help="print only; write no results page")


def commit(root: Path = ROOT) -> str:
    """git HEAD of `root`, with "+dirty" when a tracked file differs from it; "unknown" outside a git checkout."""
    try:
        head = _git(root, "rev-parse", "HEAD").strip()
        changed = _git(root, "status", "--porcelain", "--untracked-files=no").strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if changed else "")


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=30).stdout


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 2) for x in os.getloadavg()]


def peak_memory_mb() -> float:
    """Peak resident memory of this process or of any child it waited for (Linux reports KiB)."""
    return max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024


def command_line(argv: Sequence[str], root: Path = ROOT) -> str:
    """`python <script relative to the checkout> <arguments>`, quoted so that it can be pasted into a shell."""
    script = Path(argv[0]).resolve()
    shown = str(script.relative_to(root)) if script.is_relative_to(root) else argv[0]
    return shlex.join(["python", shown, *argv[1:]])


def write_atomic(path: Path, data: bytes) -> None:
    """`data` into `path` through a temporary file in the same folder and a rename: readers see the old file or the
    new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def runs_prior(tracking_uri: str, experiment: str, newest_launch: bool = False) -> tuple[str, str | None]:
    """The prior kind and sha256 that the trial runs of an MLflow experiment (of its newest launch only, if asked)
    recorded, as their `prior.kind` param and `df.prior.sha256` tag: for scripts whose trials ran in other
    processes. Several values are joined by ", " (the page is then stale against any one prior); ("none", None)
    when no trial ran."""
    from mlflow import MlflowClient

    from dreamfusion.tracking.schema import PARENT_TAG, PRIOR_HASH_TAG, SWEEP_TAG

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], max_results=50_000) if found else []
    trials = [r for r in runs if PARENT_TAG in r.data.tags]
    launches = sorted((r for r in runs if SWEEP_TAG in r.data.tags), key=lambda r: r.info.start_time)
    if newest_launch and launches:
        trials = [r for r in trials if r.data.tags[PARENT_TAG] == launches[-1].info.run_id]
    kinds = sorted({r.data.params.get("prior.kind", "unknown") for r in trials})
    hashes = sorted({r.data.tags[PRIOR_HASH_TAG] for r in trials if PRIOR_HASH_TAG in r.data.tags})
    return ", ".join(kinds) or NO_PRIOR, ", ".join(hashes) or None


def report_summary(report_md: Path) -> str:
    """The summary a `df-sweep report` opens with: its report.md up to the first section, title dropped."""
    text = report_md.read_text().split("\n## ", 1)[0]
    return text.split("\n", 1)[1].strip() if text.startswith("# ") else text.strip()


class ResultsPage:
    """One page, gathered while a script measures and written at its end."""

    def __init__(
        self,
        name: str,
        title: str,
        intro: str,
        results_dir: Path | None = RESULTS,
        argv: Sequence[str] | None = None,
        root: Path = ROOT,
    ) -> None:
        """`name`: the page's file stem (`docs/results/<name>.md`); `results_dir` None writes nothing."""
        argv = list(sys.argv if argv is None else argv)
        self.name, self.title, self.intro, self.results_dir = name, title, intro.strip(), results_dir
        script = Path(argv[0]).resolve()
        self.script = str(script.relative_to(root)) if script.is_relative_to(root) else argv[0]
        self.command = command_line(argv, root)
        self.commit = commit(root)
        self.load_before = load_average()
        self.started = time.monotonic()
        self.prior_kind, self.prior_sha256 = NO_PRIOR, None
        self.conditions: dict[str, str] = {"machine": f"{os.cpu_count()} CPUs, {platform.machine()}"}
        self.blocks: list[str] = []
        self.output: list[str] = []

    @classmethod
    def from_args(cls, args: argparse.Namespace, name: str, title: str, intro: str) -> ResultsPage:
        """A page for a parser that `add_arguments` extended."""
        return cls(name, title, intro, args.results_dir if args.page else None)

    def prior(self, kind: str, sha256: str | None) -> None:
        """The prior the numbers were measured on: its kind and the sha256 of its weights as loaded."""
        self.prior_kind, self.prior_sha256 = kind, sha256

    def condition(self, key: str, value: object) -> None:
        """A row of the provenance table beyond the standard ones (threads, device, ...)."""
        self.conditions[key] = str(value)

    def print(self, *lines: str) -> None:
        """Print result lines and keep them for the page's output block."""
        for line in lines or ("",):
            print(line, flush=True)
            self.output.extend(ANSI.sub("", str(line)).splitlines() or [""])

    def markdown(self, text: str) -> None:
        """A block of the script's own Markdown (a table, a sentence computed from the numbers)."""
        self.blocks.append(text.strip())

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], title: str = "") -> None:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
        self.markdown((f"{title}\n\n" if title else "") + "\n".join(lines))

    def figure(self, source: Path, alt: str, name: str | None = None) -> None:
        """Copy an image into the results' `img/` folder (as `name`, default its own name) and show it."""
        name = name or source.name
        if self.results_dir is not None:
            write_atomic(self.results_dir / IMAGES / name, source.read_bytes())
        self.markdown(f"![{alt}]({IMAGES}/{name})")

    def front_matter(self, load_after: list[float], peak_mb: float, wall_s: float) -> dict[str, Any]:
        return {
            "generated_by": self.script,
            "command": self.command,
            "commit": self.commit,
            "prior": self.prior_kind,
            "prior_sha256": self.prior_sha256,
            "load_average": {"before": self.load_before, "after": load_after},
            "peak_memory_mb": round(peak_mb),
            "wall_s": round(wall_s, 1),
        }

    def render(self, peak_mb: float | None = None) -> str:
        """The page's text, its provenance taken now."""
        meta = self.front_matter(load_average(), peak_memory_mb() if peak_mb is None else peak_mb, self._wall())
        head = (
            "---\n"
            + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=1000, default_flow_style=None)
            + "---"
        )
        parts = [head, f"# {self.title}", self.intro, self._provenance(meta), *self.blocks]
        if self.output:
            parts.append("Output:\n\n```text\n" + "\n".join(self.output) + "\n```")
        return "\n\n".join(p for p in parts if p) + "\n"

    def write(self, peak_mb: float | None = None) -> Path | None:
        """Write the page (atomically); None when the script was told not to."""
        if self.results_dir is None:
            return None
        path = self.results_dir / f"{self.name}.md"
        write_atomic(path, self.render(peak_mb).encode())
        # on stderr: a script's last line on stdout stays its key=value summary
        print(f"results page: {path} (load average {self.load_before} before, {load_average()} after)", file=sys.stderr)
        return path

    def _wall(self) -> float:
        return time.monotonic() - self.started

    def _provenance(self, meta: dict[str, Any]) -> str:
        load = meta["load_average"]
        fmt = lambda xs: " / ".join(f"{x:.2f}" for x in xs)
        prior = meta["prior"] if meta["prior_sha256"] is None else f"{meta['prior']}, sha256 `{meta['prior_sha256']}`"
        rows = {
            "command": f"`{meta['command']}`",
            "commit": f"`{meta['commit']}`",
            "prior": prior,
            "load average (1 / 5 / 15 min)": f"{fmt(load['before'])} before, {fmt(load['after'])} after",
            "peak memory": f"{meta['peak_memory_mb']} MB",
            "wall time": f"{meta['wall_s']:.0f} s",
            **self.conditions,
        }
        lines = [f"Written by `{self.script}`; run the command again to measure it again.", "", "| | |", "|---|---|"]
        return "\n".join(lines + [f"| {k} | {str(v).replace('|', chr(92) + '|')} |" for k, v in rows.items()])
