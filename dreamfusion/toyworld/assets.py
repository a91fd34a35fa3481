"""What the shipped toy-world models are, in one place: where their weights live, the token length they were
trained with, and the noise schedule that both the trained prior and the analytic prior use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dreamfusion.errors import ConfigError

#: The shipped weights: unet/, scheduler/, text_encoder/, tokenizer/ (the prior) and clip/ (the scorer);
#: `df-sweep toyworld train --install` replaces them.
WEIGHTS = Path(__file__).resolve().parent / "weights"

#: The sha256 of the shipped prior's weights as loaded on the CPU in float32 (`Prior.fingerprint`, what a trial
#: records in its `df.prior.sha256` tag), kept beside them so that what reads it needs no torch: `df-sweep report`
#: and the documentation site mark results measured on another toy-world prior as stale. `df-sweep toyworld train
#: --install` rewrites it; a unit test checks it against the weights.
SHIPPED_SHA256 = WEIGHTS / "prior_sha256.txt"

#: Token sequence length of the toy tokenizer ("a purple cylinder, overhead view" is 8 tokens with BOS/EOS),
#: padded to like SD's 77.
MAX_TOKENS = 16

#: The linear-β DDPM schedule of Ho et al. 2020, ε-prediction, x0 clipped to [-1, 1] when sampling.
NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "linear",
    "beta_start": 1e-4,
    "beta_end": 0.02,
    "prediction_type": "epsilon",
    "clip_sample": True,
}


def shipped_sha256() -> str | None:
    """The shipped toy-world prior's sha256, None where its weights (or the record) are not installed."""
    return SHIPPED_SHA256.read_text().strip() if SHIPPED_SHA256.is_file() else None


def shipped_priors() -> dict[str, str]:
    """Prior kind → the sha256 of the weights it ships, for `df-sweep report` to say when trials ran on others."""
    sha = shipped_sha256()
    return {"toyworld": sha} if sha else {}


def check_weights(weights: Path, part: str) -> None:
    if not (weights / part).is_dir():
        raise ConfigError(
            f"prior: the toyworld weights are not installed ({weights / part} not found); expected "
            f"prior: analytic, or retrain them with df-sweep toyworld train --install "
            f"(3 hours on 2 threads)"
        )
