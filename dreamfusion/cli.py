"""`df-sweep`: the command line, one library call per command. User mistakes end in one readable line and a
non-zero exit, never a traceback. Heavy modules are imported inside the commands, so `--help` stays instant."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from dreamfusion.errors import ConfigError, RunError
from dreamfusion.registry import KINDS
from dreamfusion.toyworld.cli import app as toyworld_app

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # export and --from-run print their own lines

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sweeps of text-to-3D Score Distillation Sampling on Ray Tune, tracked in MLflow.",
)
app.add_typer(toyworld_app, name="toyworld")

STORAGE_HELP = (
    "Tune results root (default ./ray_results). On a multi-node cluster, storage every node reaches: "
    "s3://BUCKET/PATH, gs://BUCKET/PATH, or file:///PATH on a filesystem every node mounts (NFS)."
)
URI_HELP = "MLflow tracking URI (default sqlite:///mlruns.db)."
MAX_TRIALS_HELP = "Refuse a spec that expands to more trials than this (default 10000)."


def fail(message: str, code: int = 2) -> None:
    """Each line of the message as its own `error:` line (a spec's check reports every mistake it finds)."""
    typer.echo("\n".join(f"error: {line}" for line in message.splitlines() or [""]), err=True)
    raise typer.Exit(code)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn ConfigError (exit 2), RunError (exit 1) and a Ctrl-C (exit 130) into one line instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            fail(str(exc))
        except RunError as exc:
            fail(str(exc), 1)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


def echo_err(message: str) -> None:
    typer.echo(message, err=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"df-sweep {version('df-sweep')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."
    ),
) -> None:
    """The options every command shares: only --version (typer's callback of the whole app)."""


@app.command()
@user_errors
def run(
    config: Path | None = typer.Option(None, "--config", "-c", help="Trial config YAML (the `base` schema)."),
    prompt: str | None = typer.Option(None, help="Text prompt (overrides the config)."),
    steps: int | None = typer.Option(None, help="Optimisation steps (overrides the config)."),
    seed: int | None = typer.Option(None, help="Random seed (overrides the config)."),
    out: Path | None = typer.Option(
        None,
        help="Directory for renders, checkpoints and final artifacts (default: a new runs/<prompt>_<time>). "
        "A directory holding an unfinished run of the same config continues it; any other is refused.",
    ),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: --set sds.guidance_scale=50."),
    resume: bool = typer.Option(False, help="Fail unless --out holds a run to continue."),
    tracking_uri: str | None = typer.Option(None, help=URI_HELP),
    tracking: bool = typer.Option(True, "--tracking/--no-tracking", help="Log to MLflow (--no-tracking: do not)."),
    from_run: str | None = typer.Option(
        None, "--from-run", help="Re-run a logged trial with exactly its config (an MLflow run id); says what differs."
    ),
) -> None:
    """Run one SDS trial without Ray: optimise a NeRF for a prompt and write renders and metrics."""
    from dreamfusion.single import run_single

    given = {k: v for k, v in (("prompt", prompt), ("steps", steps), ("seed", seed)) if v is not None}
    overrides = [*set_, *(f"{k}={v}" for k, v in given.items())]
    options = {k: f"--{k}" for k in given}
    result = run_single(config, overrides, out, resume, tracking_uri, tracking, echo_err, from_run, options)
    typer.echo(f"\ndone in {result.wall_s:.0f}s: " + "  ".join(f"{k}={v:.3f}" for k, v in result.metrics.items()))
    for name, path in result.artifacts.items():
        typer.echo(f"  {name:10s} {path}")


@app.command("config")
@user_errors
def show_config(
    config: Path | None = typer.Argument(None, help="A trial config YAML to check and print resolved."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key."),
    markdown: bool = typer.Option(False, "--markdown", help="Print the reference as Markdown tables (the docs page)."),
) -> None:
    """Print the trial config: every key with its default and meaning, or a file's resolved values."""
    from dreamfusion.config.files import load_trial_config, reference, to_yaml

    if markdown and (config is not None or set_):
        fail("--markdown prints the reference of every key; it takes no config file or --set")
    if markdown:
        from dreamfusion.reference.config_page import config_markdown

        typer.echo(config_markdown(), nl=False)
    elif config is None and not set_:
        typer.echo("\n".join(reference()))
    else:
        typer.echo(to_yaml(load_trial_config(config, set_)), nl=False)


@app.command()
@user_errors
def components(
    kind: str | None = typer.Option(None, help=f"Only this kind: {', '.join(KINDS)}."),
    markdown: bool = typer.Option(False, "--markdown", help="Print Markdown tables (the docs page)."),
) -> None:
    """The catalogue of registered components: version, summary, needs and options of each, by kind."""
    from dreamfusion.reference.catalogue import catalogue_markdown, catalogue_text

    typer.echo(catalogue_markdown(kind) if markdown else "\n".join(catalogue_text(kind)), nl=not markdown)


@app.command()
@user_errors
def priors() -> None:
    """List the registered priors and scorers, what each needs, and how to switch between them."""
    from dreamfusion.reference.catalogue import needs_notes
    from dreamfusion.registry import components

    for kind, how in (("prior", "--set prior.kind=NAME"), ("scorer", "--set scoring.model=NAME")):
        typer.echo(f"{kind}s ({how}):")
        for cls in components(kind):
            typer.echo(f"  {cls.name:17s} {cls.summary} [{'; '.join(needs_notes(cls.needs))}] v{cls.version}")


@app.command()
@user_errors
def schedules(
    prior: str | None = typer.Option(None, help="Prior whose noise schedule to use: a registered name or checkpoint."),
    steps: int | None = typer.Option(None, help="Optimisation steps of the run (default: the config's)."),
    seed: int | None = typer.Option(None, help="Seed of the random schedules (default: the config's)."),
    set_: list[str] = typer.Option([], "--set", help="Override a trial-config key: --set sds.timesteps.t_min=0.2."),
    csv: bool = typer.Option(False, "--csv", help="Print `schedule,step,t` CSV rows on stdout."),
    out: Path = typer.Option(Path("schedules"), help="Directory for schedules.png."),
) -> None:
    """Every timestep schedule's t per step for a prior's noise schedule, as a plot and CSV; no weights loaded."""
    from dreamfusion.sds.preview import preview_schedules

    preview = preview_schedules(set_, prior, steps, seed, out)
    if csv:
        typer.echo("\n".join(preview.csv_lines()))
        echo_err(f"plot: {preview.png}")
    else:
        typer.echo("\n".join(preview.summary_lines()))


@app.command()
@user_errors
def launch(
    spec: Path = typer.Argument(..., help="Sweep spec YAML, e.g. sweeps/smoke.yaml."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Override a spec key: --set tune.num_samples=4, --set base.steps=100, --set space.seed.grid=[0,1,2].",
    ),
    address: str | None = typer.Option(None, help="Ray cluster: auto or ray://HOST:PORT (default: embedded)."),
    tracking_uri: str | None = typer.Option(None, help=URI_HELP),
    storage: str | None = typer.Option(None, help=STORAGE_HELP),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the expanded trial table and exit."),
    max_trials: int = typer.Option(10_000, "--max-trials", min=1, help=MAX_TRIALS_HELP),
) -> None:
    """Run a sweep on Ray Tune, every trial tracked in MLflow."""
    from dreamfusion.sweep.validate import load_spec

    sweep = load_spec(spec, set_, max_trials)
    if dry_run:
        from dreamfusion.console.table import dry_run_lines
        from dreamfusion.tracking.store import resolve_uri
        from dreamfusion.tune.session import local_slots, preflight

        preflight(sweep, resolve_uri(tracking_uri or sweep.tracking.uri), address)
        typer.echo("\n".join(dry_run_lines(sweep, local_slots(sweep.resources) if address is None else None)))
        return
    from dreamfusion.tune.launch import launch_sweep

    _finish(launch_sweep(sweep, address=address, tracking_uri=tracking_uri, storage=storage, echo=typer.echo))


@app.command()
@user_errors
def validate(
    spec: Path = typer.Argument(..., help="Sweep spec YAML."),
    set_: list[str] = typer.Option([], "--set", help="Override a spec key, as for launch."),
    max_trials: int = typer.Option(10_000, "--max-trials", min=1, help=MAX_TRIALS_HELP),
) -> None:
    """Check a sweep spec (schema, keys, every value and combination) without running anything."""
    from dreamfusion.console.table import count_text
    from dreamfusion.sweep.validate import load_spec

    sweep = load_spec(spec, set_, max_trials)
    typer.echo(f"{spec}: ok: sweep {sweep.name!r}, {count_text(sweep)}, varying {', '.join(sweep.varied)}")


@app.command()
@user_errors
def resume(
    name: str = typer.Argument(..., help="Sweep name (its newest launch) or a launch directory."),
    address: str | None = typer.Option(None, help="Ray cluster: auto or ray://HOST:PORT (default: embedded)."),
    storage: str | None = typer.Option(None, help=STORAGE_HELP),
    tracking_uri: str | None = typer.Option(
        None,
        help="MLflow tracking URI holding the launch's runs (default: the one the launch recorded); for a store "
        "that moved since.",
    ),
) -> None:
    """Continue an interrupted sweep: finished trials stay, the rest go on from their checkpoints."""
    from dreamfusion.tune.launch import resume_sweep

    _finish(resume_sweep(name, address=address, storage=storage, tracking_uri=tracking_uri, echo=typer.echo))


@app.command()
@user_errors
def status(
    name: str | None = typer.Argument(None, help="Sweep name; without it, every sweep under --storage."),
    storage: str | None = typer.Option(None, help=STORAGE_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON object: the storage root and each sweep's launch with its trials."
    ),
) -> None:
    """The trial table of a sweep (state, varied values, metric), from its stored Tune results."""
    from dreamfusion.tune.results import status_json, status_lines

    typer.echo(status_json(name, storage) if as_json else "\n".join(status_lines(name, storage)))


@app.command()
@user_errors
def ui(
    port: int = typer.Option(5000, min=0, max=65535, help="Port of the MLflow UI; 0: any free port."),
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep 127.0.0.1 unless you mean to share it."),
    tracking_uri: str | None = typer.Option(None, help="The SQLite store (default sqlite:///mlruns.db)."),
) -> None:
    """Serve the MLflow UI of the local store; Ctrl-C stops it."""
    from dreamfusion.tracking.server import serve_ui
    from dreamfusion.tracking.store import resolve_uri

    code = serve_ui(resolve_uri(tracking_uri), host, port, typer.echo, echo_err)
    if code:
        fail(f"the MLflow server exited with code {code}", code)


@app.command()
@user_errors
def report(
    names: list[str] = typer.Argument(..., metavar="NAME", help="Sweeps to report on, or NAME@LAUNCH for one launch."),
    out: Path = typer.Option(Path("report"), help="Directory for report.html, report.md, CSVs and plots."),
    tracking_uri: str | None = typer.Option(None, help=URI_HELP),
) -> None:
    """What a sweep found: paired comparisons with Holm-adjusted tests, what mattered, and what differs between
    sweeps or launches (NAME@LAUNCH: parent run id, launch name, or number, -1 the newest), as an offline
    report.html, report.md and CSVs."""
    from analysis.report import report as write
    from dreamfusion.toyworld.assets import shipped_priors
    from dreamfusion.tracking.store import check_store, resolve_uri

    check_store(resolve_uri(tracking_uri))

    typer.echo("\n".join(write(names, out, tracking_uri, typer.echo, shipped_priors())))


@app.command()
@user_errors
def export(
    source: str = typer.Argument(..., help="An MLflow run id (any store), or a trial directory or checkpoint."),
    out: Path = typer.Option(..., help="Directory for the mesh, the video and the renders."),
    mesh: str | None = typer.Option("glb", help="Mesh format: glb, obj or ply; 'none' for no mesh."),
    video: str | None = typer.Option("mp4", help="Video format: mp4; 'none' for no video."),
    resolution: int = typer.Option(256, help="Side in pixels of the renders and the video."),
    frames: int = typer.Option(48, help="Frames of the turntable video (one full turn)."),
    views: int = typer.Option(4, help="Views of the re-renders, each in albedo, shaded, textureless, depth, normals."),
    mesh_resolution: int = typer.Option(256, help="Marching-cubes grid points per side."),
    threshold: float | None = typer.Option(None, help="Surface density τ (default: the trial's export.threshold)."),
    samples: int = typer.Option(64, help="Samples per ray of the renders (more: crisper, slower on a CPU)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1."),
    tracking_uri: str | None = typer.Option(None, help=URI_HELP),
) -> None:
    """A trained trial as a mesh (marching cubes, vertex colours), an mp4 turntable and high-resolution renders."""
    from dreamfusion.export_run import ExportRequest, export_trial
    from dreamfusion.tracking.store import check_store, resolve_uri

    if not Path(source).expanduser().exists():  # a run id: its store, checked; a local path needs none
        check_store(resolve_uri(tracking_uri))

    off = lambda v: None if v is None or v.lower() == "none" else v
    request = ExportRequest(
        off(mesh), off(video), resolution, frames, views, mesh_resolution, threshold, samples, device=device
    )
    export_trial(source, out, request, tracking_uri, typer.echo)


@app.command()
@user_errors
def gc(
    name: str = typer.Argument(..., help="Sweep name (the MLflow experiment)."),
    keep_best: int = typer.Option(..., "--keep-best", help="Trials whose weights, meshes and videos stay."),
    metric: str | None = typer.Option(None, help="Rank by this metric (default: the sweep's tune.metric)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be freed; delete nothing."),
    tracking_uri: str | None = typer.Option(None, help=URI_HELP),
) -> None:
    """Delete the heavy artifacts (field weights, meshes, videos) of all but the best K trials of a sweep."""
    from dreamfusion.tracking.store import check_store, resolve_uri
    from dreamfusion.tune.retention import collect_garbage

    check_store(resolve_uri(tracking_uri))

    collect_garbage(name, keep_best, tracking_uri, metric, dry_run, typer.echo)


def _finish(outcome: Any) -> None:
    from dreamfusion.tune.results import summary

    typer.echo("")
    for line in summary(outcome):
        typer.echo(line)
    if not outcome.ok:
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
