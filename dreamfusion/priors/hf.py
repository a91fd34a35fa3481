"""What the two diffusers adapters share about loading Hugging Face checkpoints."""

from __future__ import annotations

from typing import Any

import torch
import transformers
from packaging.version import Version

#: transformers renamed `torch_dtype` to `dtype` in 4.56 and warns on the old name from 5.0; we support both.
_DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"


def transformers_dtype(dtype: torch.dtype) -> dict[str, Any]:
    """`from_pretrained` kwargs that load a transformers model in `dtype` (keeping its fp32-only modules, e.g. T5's
    `wo`, in fp32, which a later `.to(dtype)` would not)."""
    return {_DTYPE_KWARG: dtype}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def count_params(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())
