"""`df-sweep run`: one trial without Ray. The config from a file and overrides, checked like a sweep's trials, a
run directory of its own (never one holding another run), an MLflow run in the `df-sweep-run` experiment
(continued when the same directory is), progress on stderr."""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from pathlib import Path

from dreamfusion.config.files import flatten, load_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.console.table import run_name
from dreamfusion.console.trial_progress import ConsoleProgress, Echo
from dreamfusion.errors import ConfigError, shorten
from dreamfusion.outdir import kept_if_written
from dreamfusion.tracking import provenance
from dreamfusion.tracking.artifacts import fetch_config, fetch_init, get_run, looks_like_run_id
from dreamfusion.tracking.callback import TrialTracker
from dreamfusion.tracking.schema import FROM_RUN_TAG, INIT_RUN_TAG
from dreamfusion.tracking.store import (
    RUN_EXPERIMENT,
    check_reachable,
    open_experiment,
    resolve_uri,
)
from dreamfusion.trial.loop import TrialResult, run_trial
from dreamfusion.trial.preflight import check_trial
from dreamfusion.trial.state import latest_checkpoint
from dreamfusion.tune.storage import claim_new_dir

#: Where runs go without --out: one new directory per run, named by its prompt and start time.
RUNS_DIR = Path("runs")
MAX_SLUG = 40


def run_single(
    config: Path | None,
    overrides: list[str],
    out: Path | None,
    resume: bool,
    tracking_uri: str | None,
    tracked: bool,
    echo: Echo,
    from_run: str | None = None,
    options: dict[str, str] | None = None,
) -> TrialResult:
    """Run one trial; user mistakes raise ConfigError before the prior loads (a bad URI costs no minutes) and
    before anything is written. `from_run`: re-run a logged trial with exactly its config (and `overrides`), saying
    how today's code differs. `options`: config key → the option that set it (`steps` → `--steps`), named in
    its error. What is fetched from MLflow (that config, `init_from` weights) goes to a temporary
    directory: the run directory is chosen only once the config is known, and holds only the run."""
    uri = resolve_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="df-fetch-") as fetched:
        if from_run is not None:
            if config is not None:
                raise ConfigError("--from-run: takes the run's own config; leave out --config (--set still applies)")
            config = fetch_config(uri, from_run, Path(fetched) / "from_run", "--from-run")
        if resume:
            if out is None:
                raise ConfigError("--resume: continues the run in --out; pass the --out of the run to continue")
            if not (out.is_dir() and any(out.iterdir())):
                raise ConfigError(f"--resume: {out} holds no run to continue")
        cfg = load_trial_config(config, quote_prompt(overrides), options)
        check_trial(cfg, str(config) if config else "the command line")
        check_device(cfg.device)
        if tracked:
            check_reachable(uri)
        init = fetch_init(cfg, uri, Path(fetched) / "init")  # checked before a run directory is made
        made = out is None or not out.exists()
        out, existing = run_dir(out, cfg)
        resume_from = latest_checkpoint(out) if existing else None
        init = init if resume_from is None else None  # a continued run has its own weights
        echo(f"run directory: {out}" + (f" (continuing from {resume_from.name})" if resume_from else ""))
        progress = ConsoleProgress(cfg.steps, echo)
        with kept_if_written(out, made):
            if not tracked:
                return run_trial(cfg, out, progress, resume_from=resume_from, init_weights=init)
            origin = provenance.collect()
            tags = {FROM_RUN_TAG: from_run} if from_run else {}
            if from_run:
                for change in provenance.differences(get_run(uri, from_run, "--from-run").data.tags, origin.code):
                    echo(f"differs from run {from_run}: {change}")
            if cfg.init_from and looks_like_run_id(cfg.init_from) and not Path(cfg.init_from).exists():
                tags[INIT_RUN_TAG] = cfg.init_from
            tracker = TrialTracker(uri, open_experiment(uri, RUN_EXPERIMENT), provenance=origin)
            name = run_name({"prompt": cfg.prompt, "seed": cfg.seed})
            with tracker.run(run_key(out), name, continue_existing=existing, then=progress, tags=tags) as callback:
                return run_trial(cfg, out, callback, resume_from=resume_from, init_weights=init)


def check_device(name: str) -> None:
    """The device a run on this machine asks for is here: else the trial fails in torch, after its directory."""
    import torch

    kind, _, index = name.partition(":")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name}: this machine has no CUDA device torch can use; expected auto or cpu")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise ConfigError(f"device: {name}: this machine has {torch.cuda.device_count()} CUDA devices")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: {name}: this machine has no MPS device (Apple silicon); expected auto or cpu")


def run_dir(out: Path | None, cfg: TrialConfig) -> tuple[Path, bool]:
    """The run's directory and whether it holds this run already (to continue). Without --out, a new one; a
    directory holding anything else, another config's run or a finished run is refused, never written into."""
    try:
        if out is None:
            stem = f"{slug(cfg.prompt)}_{time.strftime('%Y%m%d-%H%M%S')}"
            return RUNS_DIR / claim_new_dir(str(RUNS_DIR.absolute()), stem), False
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file; expected a directory for the run")
        if out.is_dir() and any(out.iterdir()):
            _check_same_run(out, cfg)
            return out, True
        out.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out).close()  # can we write in it? (nothing is left behind)
    except OSError as exc:
        where = out or RUNS_DIR
        raise ConfigError(f"--out {where}: cannot write there ({exc.strerror or exc})") from None
    return out, False


def _check_same_run(out: Path, cfg: TrialConfig) -> None:
    """An existing directory is continued only if it holds an unfinished run of exactly this config."""
    another = f"pass another --out (or none: each run then gets a new directory under {RUNS_DIR}/)"
    stored = out / "config.yaml"
    if not stored.is_file():
        raise ConfigError(f"--out {out}: holds files that are not a df-sweep run; {another}")
    try:
        theirs = flatten(load_trial_config(stored))
    except ConfigError:
        raise ConfigError(f"--out {out}: holds a run whose config.yaml this version cannot read; {another}") from None
    ours = flatten(cfg)
    differ = [k for k in ours if theirs.get(k) != ours[k]]
    if differ:
        key = differ[0]
        raise ConfigError(
            f"--out {out}: holds a run of another config ({key}: {shorten(theirs.get(key))} there, "
            f"{shorten(ours[key])} here{f', and {len(differ) - 1} more' if len(differ) > 1 else ''}); {another}"
        )
    checkpoint = latest_checkpoint(out)
    if (
        checkpoint is not None
        and checkpoint.name == f"step_{cfg.steps:06d}"
        and (out / "final" / "metrics.json").is_file()
    ):
        raise ConfigError(f"--out {out}: holds this run, finished; {another} to run it again")


def slug(prompt: str) -> str:
    """A prompt as a directory name: lowercase letters, digits and dashes, short; a prompt is data, not a path."""
    text = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:MAX_SLUG].rstrip("-")
    return text or "run"


def quote_prompt(overrides: list[str]) -> list[str]:
    """A prompt is data: keep `--prompt "a: b"` a string rather than YAML-parsing it into a mapping."""
    return [f"prompt={json.dumps(o.partition('=')[2])}" if o.startswith("prompt=") else o for o in overrides]


def run_key(out: Path) -> str:
    """`--resume` in the same --out continues the same MLflow run: the run is found by this key."""
    return "run-" + hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]
