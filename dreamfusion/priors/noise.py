"""Noise schedules of the priors without their weights: the published scheduler configs ship in `schedulers/`,
and ᾱ_t is built from a config by diffusers' own scheduler class, so it is the table the loaded prior would use
(a plain DDPM linear-β config, the toy world's, is written out here as that class computes it).

`schedulers/<org>--<name>.json` is the `scheduler/scheduler_config.json` of the hub checkpoint `<org>/<name>`,
as published (Stable Diffusion 2.1 base: a PNDM config over the scaled-linear β schedule, ε-prediction; DeepFloyd
IF-I-XL: a DDPM config over the squared-cosine β schedule, ε-prediction with a learned variance range). They let
`df-sweep schedules` show a schedule before any GPU-hour is spent, and let anything that needs a checkpoint's
training schedule or prediction type know it offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion.errors import ConfigError

#: The folder of the shipped scheduler configs.
SCHEDULERS = Path(__file__).resolve().parent / "schedulers"
#: Where a diffusers checkpoint keeps its scheduler's config.
CONFIG_PATH = Path("scheduler") / "scheduler_config.json"


def shipped_models() -> list[str]:
    """The hub ids whose scheduler config ships with df-sweep."""
    return sorted(p.stem.replace("--", "/", 1) for p in SCHEDULERS.glob("*.json"))


def shipped_config(model: str) -> dict[str, Any] | None:
    """The published scheduler config of hub checkpoint `model`, if it ships with df-sweep."""
    path = SCHEDULERS / f"{model.replace('/', '--', 1)}.json"
    return read_config(path) if "/" in model and path.is_file() else None


def read_config(path: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable scheduler config ({type(exc).__name__})") from None
    return config


def checkpoint_config(model: str) -> dict[str, Any]:
    """The scheduler config of checkpoint `model` read without its weights: the checkpoint's own file for a local
    directory, the shipped copy for a hub id df-sweep knows; anything else would need a download."""
    local = Path(model).expanduser()
    if local.is_dir():
        return read_config(local / CONFIG_PATH)
    shipped = shipped_config(model)
    if shipped is None:
        raise ConfigError(
            f"prior.model: the noise schedule of {model!r} is not shipped with df-sweep; expected a local "
            f"checkpoint directory or one of {', '.join(shipped_models())}"
        )
    return shipped


def alphas_cumprod(config: dict[str, Any]) -> Tensor:
    """[T] float32 ᾱ_t, from the scheduler class the config names (diffusers' own β schedules, no download); a
    plain DDPM linear-β config (the toy world's) is computed here as diffusers computes it, bit for bit, so that
    loading the toy prior imports no diffusers."""
    if _is_plain_ddpm_linear(config):
        betas = torch.linspace(
            config["beta_start"], config["beta_end"], config["num_train_timesteps"], dtype=torch.float32
        )  # [T]
        return torch.cumprod(1.0 - betas, dim=0)
    import diffusers

    cls = getattr(diffusers, str(config.get("_class_name", "DDPMScheduler")), None)
    if cls is None or not hasattr(cls, "from_config"):
        raise ConfigError(f"scheduler config: {config.get('_class_name')!r} is not a diffusers scheduler")
    scheduler = cls.from_config(config)
    return scheduler.alphas_cumprod.to(torch.float32)


def _is_plain_ddpm_linear(config: dict[str, Any]) -> bool:
    return (
        config.get("_class_name", "DDPMScheduler") == "DDPMScheduler"
        and config.get("beta_schedule") == "linear"
        and config.get("trained_betas") is None
        and not config.get("rescale_betas_zero_snr", False)
    )
