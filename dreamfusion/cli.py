"""`df-sweep`: the command line. User mistakes end in one readable line and a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import typer

from dreamfusion.config import ConfigError, TrialConfig, load_trial_config

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Sweeps of text-to-3D Score Distillation Sampling on Ray Tune, tracked in MLflow.")


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable) -> Callable:
    """Turn ConfigError (and a Ctrl-C) into a one-line message and exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


class ConsoleProgress:
    """Progress of one trial on stderr: a line per eval with the metrics, a step counter in between."""

    def __init__(self, total: int) -> None:
        self.total, self.started = total, time.perf_counter()

    def step(self, step: int, metrics: dict[str, float]) -> None:
        if sys.stderr.isatty():
            rate = step / max(time.perf_counter() - self.started, 1e-9)
            typer.echo(f"\rstep {step}/{self.total}  loss {metrics['loss']:.4f}  t {metrics['t']:.0f}  "
                       f"{metrics['step_ms']:.0f} ms/step", err=True, nl=False)

    def eval(self, step: int, metrics: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {v:.3f}" for k, v in metrics.items())
        elapsed = time.perf_counter() - self.started
        typer.echo(f"\rstep {step}/{self.total} [{elapsed:.0f}s]  {shown}", err=True)


@app.command()
@user_errors
def run(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Trial config YAML (the `base` schema)."),
    prompt: Optional[str] = typer.Option(None, help="Text prompt (overrides the config)."),
    steps: Optional[int] = typer.Option(None, help="Optimisation steps (overrides the config)."),
    seed: Optional[int] = typer.Option(None, help="Random seed (overrides the config)."),
    out: Path = typer.Option(Path("runs/trial"), help="Directory for renders, checkpoints and final artifacts."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set sds.guidance_scale=50."),
    resume: bool = typer.Option(False, help="Continue from the latest checkpoint in --out."),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default sqlite:///mlruns.db)."),
    no_tracking: bool = typer.Option(False, help="Do not log to MLflow."),
) -> None:
    """Run one SDS trial without Ray: optimise a NeRF for a prompt and write renders and metrics."""
    from dreamfusion.sweep.spec import check_trial, run_name
    from dreamfusion.trial import latest_checkpoint, run_trial

    overrides = list(set_)
    overrides += [f"prompt={prompt}"] if prompt is not None else []
    overrides += [f"steps={steps}"] if steps is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    cfg = load_trial_config(config, _quote_prompt(overrides))
    check_trial(cfg, str(config) if config else "--set")
    resume_from = latest_checkpoint(out) if resume else None
    if resume and resume_from is None:
        raise ConfigError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    tracker = None if no_tracking else _run_tracker(tracking_uri)
    callback = _run_callback(cfg)
    if tracker is None:
        result = run_trial(cfg, out, callback, resume_from=resume_from)
    else:
        name = run_name({"prompt": cfg.prompt, "seed": cfg.seed})
        with tracker.run(_run_key(out), name, continue_existing=resume, then=callback) as tracked:
            result = run_trial(cfg, out, tracked, resume_from=resume_from)
    typer.echo(f"\ndone in {result.wall_s:.0f}s: " + "  ".join(f"{k}={v:.3f}" for k, v in result.metrics.items()))
    for name, path in result.artifacts.items():
        typer.echo(f"  {name:10s} {path}")


def _quote_prompt(overrides: list[str]) -> list[str]:
    """A prompt is data: keep `--prompt "a: b"` a string rather than YAML-parsing it into a mapping."""
    return [f"prompt={_yaml_str(o.partition('=')[2])}" if o.startswith("prompt=") else o for o in overrides]


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)


def _run_tracker(tracking_uri: str | None):
    """The single run's MLflow target, checked before the prior loads: a bad URI costs no minutes."""
    from dreamfusion.tracking import RUN_EXPERIMENT, TrialTracker, check_reachable, open_experiment, resolve_uri

    uri = resolve_uri(tracking_uri)
    check_reachable(uri)
    return TrialTracker(uri, open_experiment(uri, RUN_EXPERIMENT))


def _run_key(out: Path) -> str:
    """`--resume` in the same --out continues the same MLflow run: the run is found by this key."""
    import hashlib

    return "run-" + hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:16]


def _run_callback(cfg: TrialConfig):
    from dreamfusion.trial import TrialCallback

    progress = ConsoleProgress(cfg.steps)

    class RunCallback(TrialCallback):
        def on_start(self, cfg, start_step, info):
            typer.echo(f"prior: {info['prior']}", err=True)
            typer.echo(f"scorer: {info['scorer']}", err=True)
            if start_step:
                typer.echo(f"resuming at step {start_step}", err=True)

        def on_step(self, step, metrics):
            progress.step(step, metrics)

        def on_eval(self, step, metrics, render_path, checkpoint):
            progress.eval(step, metrics)

    return RunCallback()


@app.command("config")
@user_errors
def show_config(
    config: Optional[Path] = typer.Argument(None, help="A trial config YAML to check and print resolved."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key."),
) -> None:
    """Print the trial config: every key with its default and meaning, or a file's resolved values."""
    from dreamfusion.config import reference, to_yaml

    if config is None and not set_:
        typer.echo("\n".join(reference()))
    else:
        typer.echo(to_yaml(load_trial_config(config, set_)), nl=False)


# ---------------------------------------------------------------------------------------------------------------
# Sweeps

STORAGE_HELP = ("Tune results root (default ./ray_results). On a multi-node cluster, storage every node reaches: "
                "s3://BUCKET/PATH, gs://BUCKET/PATH, or file:///PATH on a filesystem every node mounts (NFS).")


@app.command()
@user_errors
def launch(
    spec: Path = typer.Argument(..., help="Sweep spec YAML, e.g. sweeps/smoke.yaml."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key: --set tune.num_samples=4, "
                                   "--set base.steps=100, --set space.seed.grid=[0,1,2]."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: auto or ray://HOST:PORT (default: embedded)."),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default sqlite:///mlruns.db)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded trial table and exit."),
) -> None:
    """Run a sweep on Ray Tune, every trial tracked in MLflow."""
    from dreamfusion.sweep.spec import load_spec

    sweep = load_spec(spec, set_)
    if dry_run:
        from dreamfusion.sweep.launch import preflight
        from dreamfusion.tracking import resolve_uri

        preflight(sweep, resolve_uri(tracking_uri or sweep.tracking.uri), address)
        _echo_trials(sweep)
        return
    from dreamfusion.sweep.launch import launch_sweep

    _finish(launch_sweep(sweep, address=address, tracking_uri=tracking_uri, storage=storage, echo=typer.echo))


@app.command()
@user_errors
def validate(
    spec: Path = typer.Argument(..., help="Sweep spec YAML."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key, as for launch."),
) -> None:
    """Check a sweep spec (schema, keys, every value and combination) without running anything."""
    from dreamfusion.sweep.spec import load_spec

    sweep = load_spec(spec, set_)
    typer.echo(f"{spec}: ok: sweep {sweep.name!r}, {_count_trials(sweep)}, varying {', '.join(sweep.varied)}")


@app.command()
@user_errors
def resume(
    name: str = typer.Argument(..., help="Sweep name (its newest launch) or a launch directory."),
    address: Optional[str] = typer.Option(None, help="Ray cluster: auto or ray://HOST:PORT (default: embedded)."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """Continue an interrupted sweep: finished trials stay, the rest go on from their checkpoints."""
    from dreamfusion.sweep.launch import resume_sweep

    _finish(resume_sweep(name, address=address, storage=storage, echo=typer.echo))


@app.command()
@user_errors
def status(
    name: Optional[str] = typer.Argument(None, help="Sweep name; without it, every sweep under --storage."),
    storage: Optional[str] = typer.Option(None, help=STORAGE_HELP),
) -> None:
    """The trial table of a sweep (state, varied values, metric), from its stored Tune results."""
    from collections import Counter

    from dreamfusion.sweep.launch import Launch, find_launch, storage_root, sweep_names, trial_rows
    from dreamfusion.sweep.spec import format_table

    names = [name] if name else sweep_names(storage_root(storage))
    if not names:
        raise ConfigError(f"no sweeps under {storage_root(storage)}; df-sweep launch SPEC starts one")
    for sweep_name in names:
        launch = Launch.load(find_launch(sweep_name, storage))
        spec = launch.sweep
        rows = trial_rows(launch.experiment_dir, spec)
        states = ", ".join(f"{n} {s}" for s, n in Counter(r.state for r in rows).items()) or "no trials yet"
        typer.echo(f"{spec.name}  ({launch.experiment_dir}): {states}")
        if name:
            metric = spec.tune.metric
            table = [{"trial": r.trial_id, "state": r.state, **{k: str(v) for k, v in r.values.items()},
                      metric: "" if r.metric is None else f"{r.metric:.4f}", "step": str(r.step or "")}
                     for r in rows]
            typer.echo(format_table(table))


@app.command()
@user_errors
def ui(
    port: int = typer.Option(5000, help="Port of the MLflow UI."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep 127.0.0.1 unless you mean to share it."),
    tracking_uri: Optional[str] = typer.Option(None, help="The SQLite store (default sqlite:///mlruns.db)."),
) -> None:
    """Serve the MLflow UI of the local store; Ctrl-C stops it."""
    import signal
    import subprocess

    from dreamfusion.tracking import experiment_links, resolve_uri, server_command

    uri = resolve_uri(tracking_uri)
    command = server_command(uri, host, port)
    base = f"http://{host}:{port}"
    child = subprocess.Popen(command, env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                             start_new_session=True)
    typer.echo(f"MLflow UI for {uri} at {base} (pid {child.pid}); Ctrl-C stops it")
    for experiment, link in experiment_links(uri, base):
        typer.echo(f"  {experiment}: {link}")
    # Explicit handlers: a shell that starts df-sweep in the background ignores SIGINT, and `kill` sends SIGTERM.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    try:
        code = child.wait()
    except KeyboardInterrupt:
        os.killpg(child.pid, signal.SIGTERM)  # the server's own workers are in the child's process group
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        return
    if code:
        fail(f"the MLflow server exited with code {code}", code)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _echo_trials(sweep) -> None:
    from dreamfusion.sweep.spec import format_table, trial_table

    typer.echo(f"sweep {sweep.name}: {_count_trials(sweep)}")
    typer.echo(format_table(trial_table(sweep)))


def _count_trials(sweep) -> str:
    points = len(sweep.grid_points())
    samples = sweep.tune.num_samples
    sampled = [k for k, d in sweep.space.items() if d.kind != "grid"]
    how = f"{points} grid point(s) x num_samples {samples}" + (f", sampling {', '.join(sampled)}" if sampled else "")
    return f"{sweep.num_trials()} trials ({how})"


def _finish(outcome) -> None:
    from dreamfusion.sweep.launch import summary

    typer.echo("")
    for line in summary(outcome):
        typer.echo(line)
    if not outcome.ok:
        raise typer.Exit(1)


PRIORS = {
    "toyworld": "CPU default. A small (1.7M-param UNet) text-to-image diffusion model of a toy world, trained in the "
                "package, with its own small CLIP as scorer. Not a general model: it knows 42 prompts, "
                "'a <red|green|blue|yellow|purple|orange> <cube|sphere|cone|cylinder|torus|pyramid>' and "
                "shape-only 'a cube'. Model card: dreamfusion/toyworld/MODEL_CARD.md.",
    "analytic": "CPU. The exact posterior-mean denoiser of rendered toy-world images (same 42 prompts): a "
                "known-answer prior, not a neural network, for checking SDS itself. --set prior.kind=analytic.",
    "stable-diffusion": "Stable Diffusion through diffusers (latent; default stabilityai/stable-diffusion-2-1-base). "
                        "GPU: --set prior.kind=stable-diffusion [--set prior.model=ID_OR_PATH].",
    "deepfloyd-if": "DeepFloyd IF stage I through diffusers (pixel 64x64; default DeepFloyd/IF-I-XL-v1.0). "
                    "GPU: --set prior.kind=deepfloyd-if.",
}


@app.command()
@user_errors
def report(
    name: str = typer.Argument(..., help="Sweep name (the MLflow experiment)."),
    out: Path = typer.Option(Path("report"), help="Directory for report.html, report.md, CSVs and plots."),
    tracking_uri: Optional[str] = typer.Option(None, help="MLflow tracking URI (default sqlite:///mlruns.db)."),
    launch_id: Optional[str] = typer.Option(None, "--launch", help="Only this launch (its parent run id)."),
) -> None:
    """Turn a sweep in MLflow into tables, plots and a render grid: report.html, report.md, trials.csv, curves.csv."""
    from analysis.load import SweepNotFound
    from analysis.report import main as report_main

    args = [name, "--out", str(out)] + (["--tracking-uri", tracking_uri] if tracking_uri else []) \
        + (["--launch", launch_id] if launch_id else [])
    try:
        code = report_main(args)
    except SweepNotFound as exc:
        raise ConfigError(str(exc)) from None
    if code:
        raise typer.Exit(code)


@app.command()
def priors() -> None:
    """List the priors df-sweep can run and how to switch between them."""
    for name, text in PRIORS.items():
        typer.echo(f"{name:17s} {text}")


from dreamfusion.toyworld.cli import app as toyworld_app  # noqa: E402

app.add_typer(toyworld_app, name="toyworld")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
