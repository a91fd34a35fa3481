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
    from dreamfusion.trial import latest_checkpoint, run_trial

    overrides = list(set_)
    overrides += [f"prompt={prompt}"] if prompt is not None else []
    overrides += [f"steps={steps}"] if steps is not None else []
    overrides += [f"seed={seed}"] if seed is not None else []
    cfg = load_trial_config(config, _quote_prompt(overrides))
    resume_from = latest_checkpoint(out) if resume else None
    if resume and resume_from is None:
        raise ConfigError(f"--resume: no checkpoint under {out / 'checkpoints'}")
    callback = _run_callback(cfg, out, tracking_uri, no_tracking)
    result = run_trial(cfg, out, callback, resume_from=resume_from)
    typer.echo(f"\ndone in {result.wall_s:.0f}s: " + "  ".join(f"{k}={v:.3f}" for k, v in result.metrics.items()))
    for name, path in result.artifacts.items():
        typer.echo(f"  {name:10s} {path}")


def _quote_prompt(overrides: list[str]) -> list[str]:
    """A prompt is data: keep `--prompt "a: b"` a string rather than YAML-parsing it into a mapping."""
    return [f"prompt={_yaml_str(o.partition('=')[2])}" if o.startswith("prompt=") else o for o in overrides]


def _yaml_str(text: str) -> str:
    import json

    return json.dumps(text)


def _run_callback(cfg: TrialConfig, out: Path, tracking_uri: str | None, no_tracking: bool):
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


PRIORS = {
    "analytic": "CPU default. Exact posterior-mean denoiser of rendered toy-world images: a known-answer prior, "
                "not a neural network. 42 prompts: 'a <red|green|blue|yellow|purple|orange> "
                "<cube|sphere|cone|cylinder|torus|pyramid>' and shape-only 'a cube'.",
    "toyworld": "Small trained text-to-image diffusion model of the toy world, with its own small CLIP (CPU).",
    "stable-diffusion": "Stable Diffusion through diffusers (latent; default stabilityai/stable-diffusion-2-1-base). "
                        "GPU: --set prior.kind=stable-diffusion [--set prior.model=ID_OR_PATH].",
    "deepfloyd-if": "DeepFloyd IF stage I through diffusers (pixel 64x64; default DeepFloyd/IF-I-XL-v1.0). "
                    "GPU: --set prior.kind=deepfloyd-if.",
}


@app.command()
def priors() -> None:
    """List the priors df-sweep can run and how to switch between them."""
    for name, text in PRIORS.items():
        typer.echo(f"{name:17s} {text}")


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
