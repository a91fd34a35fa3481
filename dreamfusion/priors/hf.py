"""What the diffusers adapters share about loading Hugging Face checkpoints: dtypes across transformers versions,
the `prior: MODEL` shorthand, and failures turned into a reason a user can act on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import torch

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.priors.base import Prior


class DiffusersPrior(Prior):
    """A prior whose weights are a diffusers checkpoint: `prior.model` names it (a hub id or a local directory),
    the kind's default checkpoint otherwise."""

    default_model: ClassVar[str]

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
        model = cfg.model or cls.default_model
        try:
            return cls(model, device, dtype)  # type: ignore[call-arg]
        except (OSError, ValueError) as exc:  # hub and file errors are OSErrors; malformed repo ids ValueErrors
            raise ConfigError(f"prior.model: cannot load {model!r} ({why_not_loadable(model, exc)})") from exc

    @classmethod
    def check(cls, cfg: PriorConfig) -> None:
        if not is_model_reference(cfg.model):
            raise ConfigError(f"prior.model: {cfg.model!r} is not a local model directory or a hub id 'org/name'")


def transformers_dtype(dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` kwargs that load a transformers model in `dtype` (keeping its fp32-only modules, e.g. T5's
    `wo`, in fp32, which a later `.to(dtype)` would not). transformers renamed `torch_dtype` to `dtype` in 4.56
    and warns on the old name from 5.0; both are supported."""
    import transformers
    from packaging.version import Version

    return {"dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype": dtype}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def is_model_reference(model: str | None) -> bool:
    """A diffusers prior names its weights by the kind's default, a local directory, or a hub id `org/name`."""
    return model is None or Path(model).expanduser().is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", model) is not None


def why_not_loadable(model: str, exc: Exception) -> str:
    """The reason in words a user can act on; transformers' and diffusers' own messages run over many lines."""
    if Path(model).expanduser().is_dir():
        return f"local directory: {first_line(exc)}"
    if _hub_offline(exc):
        return "not a local directory, and the model hub is unreachable offline"
    return f"not a local directory, and not a loadable hub id: {first_line(exc)}"


def _hub_offline(exc: Exception) -> bool:
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    if constants.HF_HUB_OFFLINE:
        return True
    chain = [exc, exc.__cause__, exc.__context__]
    return any(isinstance(e, (ConnectionError, LocalEntryNotFoundError)) for e in chain)
