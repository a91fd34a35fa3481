"""`df-sweep toyworld`: retrain the embedded toy-world models from scratch, and measure them for the model card."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import typer

from dreamfusion.errors import ConfigError
from dreamfusion.outdir import writable_dir
from dreamfusion.toyworld.assets import WEIGHTS as PACKAGE_WEIGHTS

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="The embedded toy-world prior and CLIP: retrain them, score them.",
)


def _log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    typer.echo(f"{stamp} {message}", err=True)
    sys.stderr.flush()


@app.command()
def train(
    out: Path = typer.Option(Path("runs/toyworld"), help="Data cache, checkpoints and the exported weights."),
    minutes: float = typer.Option(180.0, help="Wall-clock budget of the whole run; the UNet trains for what is left."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its latest checkpoint."),
    seed: int = typer.Option(0, help="Seeds the data, the initialisations, the batches and the noise."),
    threads: int = typer.Option(2, help="torch CPU threads."),
    unet_max_steps: int | None = typer.Option(None, help="Stop the UNet after this many steps (quick checks)."),
    clip_steps: int | None = typer.Option(None, help="Contrastive CLIP steps (default 800)."),
    small_data: bool = typer.Option(False, help="A few views per prompt instead of the full set (quick checks)."),
    front_bias: float | None = typer.Option(
        None, help="Share of training views that look at the object head-on (the Janus bias; default in TrainConfig)."
    ),
    bias_all: bool = typer.Option(
        False, help="Bias the views of every object, not only of the objects with a front (the spotted ones)."
    ),
    install: bool = typer.Option(False, help=f"Copy the exported weights over the shipped ones ({PACKAGE_WEIGHTS})."),
) -> None:
    """Render the world, train the tiny CLIP, then the tiny UNet, and export both in diffusers format.

    Runs in the foreground; for the full 3-hour run (the shipped weights' recipe), background it:
    nohup df-sweep toyworld train --out runs/toyworld > toyworld.log 2>&1 &
    """
    import torch

    from dreamfusion.toyworld.prior import record_sha256
    from dreamfusion.toyworld.train import TrainConfig, train_all

    _check_bounds(minutes, threads, unet_max_steps, clip_steps, front_bias)
    if not resume and out.is_dir() and any(out.iterdir()):
        _fail(f"--out {out}: holds files already; pass --resume to continue the training run there, or a fresh --out")
    try:
        writable_dir(out)
    except ConfigError as exc:
        _fail(str(exc))
    torch.set_num_threads(threads)
    cfg = TrainConfig(seed=seed, minutes=minutes, unet_max_steps=unet_max_steps)
    if clip_steps is not None:
        cfg.clip_steps = clip_steps
    if front_bias is not None:
        cfg.front_bias = front_bias
    cfg.bias_all = bias_all
    if small_data:
        cfg.colour_views, cfg.spot_views, cfg.shape_views = 4, 4, 8
    try:
        weights = train_all(cfg, out, resume=resume, log=_log)
    except FileExistsError as exc:
        _fail(str(exc))
    if install:
        if PACKAGE_WEIGHTS.exists():
            shutil.rmtree(PACKAGE_WEIGHTS)
        shutil.copytree(weights, PACKAGE_WEIGHTS)
        _log(f"installed into {PACKAGE_WEIGHTS}, prior sha256 {record_sha256(PACKAGE_WEIGHTS)}")


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _check_bounds(
    minutes: float, threads: int, unet_max_steps: int | None, clip_steps: int | None, front_bias: float | None
) -> None:
    """Every count and size of `train` in range, in one line: `--minutes -1` would train nothing and say done."""
    if not minutes > 0:
        _fail(f"--minutes: expected a budget above 0, got {minutes}")
    for option, value in (("--threads", threads), ("--unet-max-steps", unet_max_steps), ("--clip-steps", clip_steps)):
        if value is not None and value < 1:
            _fail(f"{option}: expected 1 or more, got {value}")
    if front_bias is not None and not 0 <= front_bias <= 1:
        _fail(f"--front-bias: expected a share from 0 to 1, got {front_bias}")


@app.command()
def card(
    weights: Path = typer.Option(PACKAGE_WEIGHTS, help="Exported weights folder to score."),
    views: int = typer.Option(16, help="Held-out ground-truth renders per prompt."),
    samples: int = typer.Option(8, help="Prior samples per prompt."),
    guidance: float = typer.Option(3.0, help="Classifier-free guidance scale of the samples (3 scored best)."),
    steps: int = typer.Option(25, help="DDIM steps of the samples."),
    eta: float = typer.Option(
        1.0,
        help="DDIM η of the samples: 1 is ancestral sampling, which scored far above "
        "deterministic η = 0 with this small prior.",
    ),
    sweep: str = typer.Option(
        "1,5,7.5",
        help="Other guidance scales to measure colour-sample R@1 at (a quarter "
        "of the samples per prompt); empty for none.",
    ),
    grid: Path | None = typer.Option(None, help="Sample grid PNG (default: samples.png beside the package)."),
    threads: int = typer.Option(1, help="torch CPU threads."),
) -> None:
    """Score the weights for the model card: toy-CLIP R@1 on held-out renders and on the prior's own samples.

    Writes <weights>/scores.json (including the small fixed set the tests check) and the sample grid.
    """
    import torch

    from dreamfusion.toyworld.evaluate import write_card_scores

    for option, value in (("--views", views), ("--samples", samples), ("--steps", steps), ("--threads", threads)):
        if value < 1:
            _fail(f"{option}: expected 1 or more, got {value}")
    if not 0 <= eta <= 1:
        _fail(f"--eta: expected 0 to 1, got {eta}")
    if guidance < 0:
        _fail(f"--guidance: expected 0 or more, got {guidance}")

    torch.set_num_threads(threads)
    grid = grid or Path(__file__).parent / "samples.png"
    scales = tuple(float(g) for g in sweep.split(",") if g.strip())
    scores = write_card_scores(weights, views, samples, guidance, steps, grid, scales, eta, log=_log)
    for key, value in scores["summary"].items():
        typer.echo(f"{key}={value}")


if __name__ == "__main__":  # pragma: no cover
    app()
