"""What the diffusers adapters share about loading Hugging Face checkpoints: the noise schedule and what the
denoiser predicts (ε or v), dtypes across transformers versions, the `prior: MODEL` shorthand, and failures turned
into a reason a user can act on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.priors.base import Prior
from dreamfusion.priors.noise import alphas_cumprod, checkpoint_config

#: What a denoiser may predict for SDS: ε itself, or v = α_t·ε − σ_t·x (Salimans & Ho 2022), converted to ε.
PREDICTION_TYPES = ("epsilon", "v_prediction")
#: NFSD's negative prompt (Katzir et al. 2023): words a text-to-image model associates with a bad image.
NFSD_NEGATIVE_PROMPT = (
    "unrealistic, blurry, low quality, out of focus, ugly, low contrast, dull, dark, low-resolution, gloomy"
)


class DiffusersPrior(Prior):
    """A prior whose weights are a diffusers checkpoint: `prior.model` names it (a hub id or a local directory),
    the kind's default checkpoint otherwise."""

    default_model: ClassVar[str]
    default_negative_prompt = NFSD_NEGATIVE_PROMPT
    model: str
    #: One of PREDICTION_TYPES: what the checkpoint's UNet outputs, from its scheduler config.
    prediction_type: str

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
        model = cfg.model or cls.default_model
        try:
            return cls(model, device, dtype, cfg)  # type: ignore[call-arg]
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:  # hub and file errors are OSErrors; malformed repo ids ValueErrors
            raise ConfigError(f"prior.model: cannot load {model!r} ({why_not_loadable(model, exc)})") from exc

    @classmethod
    def noise_schedule(cls, cfg: PriorConfig) -> Tensor:
        """From the checkpoint's scheduler config alone: a local directory's own, or the shipped copy of a
        published checkpoint (`dreamfusion/priors/schedulers/`)."""
        return alphas_cumprod(checkpoint_config(cfg.model or cls.default_model))

    def load_scheduler(self, model: str) -> None:
        """ᾱ_t and the prediction type from the checkpoint's scheduler, before any weight is loaded: a checkpoint
        SDS cannot use is refused in one line without minutes of loading first."""
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_pretrained(model, subfolder="scheduler")
        self.prediction_type = str(scheduler.config.prediction_type)
        if self.prediction_type not in PREDICTION_TYPES:
            raise ConfigError(
                f"prior.model: {model!r} predicts {self.prediction_type!r}; SDS needs ε, so expected a checkpoint "
                f"whose scheduler's prediction_type is one of {', '.join(PREDICTION_TYPES)}"
            )
        self.alphas_cumprod = scheduler.alphas_cumprod.to(device=self.device, dtype=torch.float32)  # [T]

    def to_epsilon(self, output: Tensor, z_t: Tensor, t: Tensor) -> Tensor:
        """ε̂ [B, C, h, w] float32 from the UNet's prediction: as is for ε-prediction; for v-prediction
        ε = α_t·v + σ_t·z_t (α_t = sqrt(ᾱ_t), σ_t = sqrt(1 − ᾱ_t)), since v = α_t·ε − σ_t·x and z_t = α_t·x + σ_t·ε."""
        output = output.float()
        if self.prediction_type == "epsilon":
            return output
        ab = self.alphas_cumprod[t.to(self.alphas_cumprod.device)].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        return ab.sqrt() * output + (1 - ab).sqrt() * z_t.float()

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
