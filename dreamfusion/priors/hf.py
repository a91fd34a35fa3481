"""What the diffusers adapters share about loading Hugging Face checkpoints: the noise schedule and what the
denoiser predicts (ε or v), dtypes across transformers versions, the `prior: MODEL` shorthand, full-size
random-weight architectures, and failures turned into a reason a user can act on.

`prior.model: random:<architecture>` names a network shipped as configs only (`architectures/`): the modules are
built from their published `config.json` with seeded random weights, through the same adapter code as a real
checkpoint, so speed, memory and dtype behaviour at full model size can be measured without a download.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.priors.base import Part, Prior, freeze
from dreamfusion.priors.noise import alphas_cumprod, checkpoint_config

RANDOM = "random:"
#: One folder per architecture, laid out like a diffusers checkpoint without its weights.
ARCHITECTURES = Path(__file__).parent / "architectures"
#: Random weights are seeded: every process that builds `random:X` on a device type builds the same network, so a
#: trial computes the same ε̂ with its prior loaded locally or served.
RANDOM_SEED = 0
#: What a denoiser may predict for SDS: ε itself, or v = α_t·ε − σ_t·x (Salimans & Ho 2022), converted to ε.
PREDICTION_TYPES = ("epsilon", "v_prediction")


class DiffusersPrior(Prior):
    """A prior whose weights are a diffusers checkpoint: `prior.model` names it (a hub id, a local directory or a
    shipped `random:` architecture), the kind's default checkpoint otherwise."""

    default_model: ClassVar[str]
    #: The shipped architectures (`random:<name>`) this adapter builds.
    architectures: ClassVar[tuple[str, ...]] = ()
    model: str
    #: One of PREDICTION_TYPES: what the checkpoint's UNet outputs, from its scheduler config.
    prediction_type: str
    network_attribute = "unet"

    @classmethod
    def load(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype) -> Prior:
        return cls.load_part(cfg, device, dtype, "all")

    @classmethod
    def load_part(cls, cfg: PriorConfig, device: torch.device, dtype: torch.dtype, part: Part) -> Prior:
        model = cfg.model or cls.default_model
        try:
            return cls(model, device, dtype, cfg, part)  # type: ignore[call-arg]
        except ConfigError:
            raise
        except (OSError, ValueError) as exc:  # hub and file errors are OSErrors; malformed repo ids ValueErrors
            raise ConfigError(f"prior.model: cannot load {model!r} ({why_not_loadable(model, exc)})") from exc

    @classmethod
    def noise_schedule(cls, cfg: PriorConfig) -> Tensor:
        """From the checkpoint's scheduler config alone: a local directory's own, the shipped copy of a published
        checkpoint (`dreamfusion/priors/schedulers/`), or a `random:` architecture's."""
        return alphas_cumprod(checkpoint_config(checkpoint_dir(cfg.model or cls.default_model)))

    def load_scheduler(self, model: str) -> None:
        """ᾱ_t and the prediction type from the checkpoint's scheduler, before any weight is loaded: a checkpoint
        SDS cannot use is refused in one line without minutes of loading first."""
        from diffusers import DDPMScheduler

        scheduler = DDPMScheduler.from_pretrained(checkpoint_dir(model), subfolder="scheduler")
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
        if cfg.model is not None and is_random(cfg.model):
            if cfg.model.removeprefix(RANDOM) not in cls.architectures:
                known = ", ".join(RANDOM + a for a in cls.architectures)
                raise ConfigError(
                    f"prior.model: {cfg.model!r} is not an architecture {cls.name} builds; expected {known}"
                )
        elif not is_model_reference(cfg.model):
            raise ConfigError(f"prior.model: {cfg.model!r} is not a local model directory or a hub id 'org/name'")

    @classmethod
    def claims(cls, model: str) -> int:
        """A shipped architecture belongs to exactly one adapter."""
        return 2 if is_random(model) and model.removeprefix(RANDOM) in cls.architectures else 0


def is_random(model: str | None) -> bool:
    return model is not None and model.startswith(RANDOM)


def checkpoint_dir(model: str) -> str:
    """Where the configs, tokenizer and scheduler of `model` are read: the checkpoint itself, or the shipped folder
    of a `random:` architecture (the same files, without weights)."""
    return str(ARCHITECTURES / model.removeprefix(RANDOM)) if is_random(model) else model


def load_module(cls: Any, model: str, subfolder: str, device: torch.device, dtype: torch.dtype) -> Any:
    """A frozen diffusers or transformers module of `model` on `device` in `dtype`: its weights, or for `random:`
    its shipped config with seeded random weights, built on `device` directly (on `meta` nothing is allocated)."""
    transformers = hasattr(cls, "config_class")
    if not is_random(model):
        kwargs = transformers_dtype(dtype) if transformers else {"torch_dtype": dtype}
        return freeze(cls.from_pretrained(model, subfolder=subfolder, **kwargs), device)
    path = checkpoint_dir(model)
    with _seeded_construction(device, dtype):
        if transformers:
            module = cls(cls.config_class.from_pretrained(path, subfolder=subfolder))
        else:
            module = cls.from_config(cls.load_config(path, subfolder=subfolder))
    for name in getattr(module, "_keep_in_fp32_modules", None) or ():  # as from_pretrained does (T5's `wo`)
        for sub_name, sub in module.named_modules():
            if sub_name.split(".")[-1] == name:
                sub.float()
    return freeze(module, device)


@contextmanager
def _seeded_construction(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Parameters made on `device` in `dtype` from a fixed seed; the caller's RNG and defaults stay as they were."""
    previous = torch.get_default_dtype()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.device(device):
        torch.manual_seed(RANDOM_SEED)
        torch.set_default_dtype(dtype)
        try:
            yield
        finally:
            torch.set_default_dtype(previous)


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
    if is_random(model):
        return f"shipped architecture: {first_line(exc)}"
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
