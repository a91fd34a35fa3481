"""`load_prior`: the one place a `PriorConfig` becomes a `Prior`.

Every adapter is imported lazily, so the CPU priors never pay for importing diffusers and transformers.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dreamfusion.config import ConfigError, PriorConfig
from dreamfusion.priors.base import Prior, resolve_device, resolve_dtype

__all__ = ["Prior", "load_prior"]


def load_prior(cfg: PriorConfig, device: str = "auto") -> Prior:
    """The prior `cfg` names, on `device`; a checkpoint that cannot be loaded is a one-line ConfigError."""
    dev = resolve_device(device)
    dtype = resolve_dtype(cfg.dtype, dev)

    if cfg.kind == "analytic":
        from dreamfusion.priors.analytic import load_analytic_prior

        return load_analytic_prior(dev)

    if cfg.kind == "toyworld":
        from dreamfusion.priors.toyworld import load_toyworld_prior

        return load_toyworld_prior(dev, dtype)

    return _load_diffusers_prior(cfg, dev, dtype)


def _load_diffusers_prior(cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
    if cfg.kind == "stable-diffusion":
        from dreamfusion.priors.diffusers_sd import DEFAULT_MODEL, StableDiffusionPrior as Adapter
    else:
        from dreamfusion.priors.diffusers_if import DEFAULT_MODEL, DeepFloydIFPrior as Adapter
    model = cfg.model or DEFAULT_MODEL
    try:
        return Adapter(model, device, dtype)
    except (OSError, ValueError) as exc:  # hub and file errors are OSErrors; malformed repo ids are ValueErrors
        raise ConfigError(f"prior.model: cannot load {model!r} ({_why_not_loadable(model, exc)})") from exc


def _why_not_loadable(model: str, exc: Exception) -> str:
    """The reason in words a user can act on; transformers' and diffusers' own messages run over many lines."""
    if Path(model).expanduser().is_dir():
        return f"local directory: {_first_line(exc)}"
    if _hub_offline(exc):
        return "not a local directory, and the model hub is unreachable offline"
    return f"not a local directory, and not a loadable hub id: {_first_line(exc)}"


def _hub_offline(exc: Exception) -> bool:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    if constants.HF_HUB_OFFLINE:
        return True
    chain = [exc, exc.__cause__, exc.__context__]
    return any(isinstance(e, (ConnectionError, LocalEntryNotFoundError)) for e in chain)


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
