"""Every level of a dense grid read in one pass, with the reads' spatial derivatives: the fused lookup.

`grid_sample` reads one level per call, and its CPU backward scatters into the grid one sample at a time; the
renderer's finite-difference normals then read the field three more times. A point's 8 corners give its trilinear
value and, from the same corners, its exact gradient (trilinear interpolation is linear along each axis inside a
cell), so one pass serves both. The pass is a small C kernel (`trilinear.c`) compiled on first use with the
machine's C compiler and cached (`dreamfusion.cache`). Without a compiler, or on a GPU, the field reads its values
with `grid_sample` and the derivatives run as torch gathers (`reference_lookup`), the same maths to float rounding.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion.cache import cache_dir

SOURCE = Path(__file__).with_name("trilinear.c")
_CORNERS = torch.tensor([[dz, dy, dx] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)])  # [8, 3] (z, y, x)


def level_table(levels: list[Tensor]) -> Tensor:
    """[1, F, r, r, r] grids (z, y, x) → one [S, F] table, S = Σ r³, level after level."""
    return torch.cat([g.reshape(g.shape[1], -1).t() for g in levels])


@cache
def kernel() -> Any | None:
    """The compiled kernel, or None (with one warning) where it cannot be built: the caller falls back."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        warnings.warn("no C compiler found: the fused grid lookup is replaced by grid_sample", stacklevel=2)
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + compiler.encode() + sys.platform.encode()).hexdigest()[:16]
    library = cache_dir() / "kernels" / f"trilinear-{key}.so"
    try:
        if not library.is_file():
            _build(compiler, library)
        lib = ctypes.CDLL(str(library))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = e.stderr.strip()[:200] if isinstance(e, subprocess.CalledProcessError) else e
        warnings.warn(f"the fused grid lookup could not be built ({detail}): grid_sample is used", stacklevel=2)
        return None
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    signatures = {
        "trilinear_forward": [ptr, ptr, i64, i64, i64, ptr, ptr, ptr],
        "trilinear_backward": [ptr, i64, i64, i64, ptr, ptr, ptr, ptr, i64],
        "trilinear_gradient": [ptr, ptr, i64, i64, i64, ptr, ptr, ptr, ptr],
        "trilinear_gradient_backward": [ptr, ptr, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, i64, ptr],
    }
    for name, argtypes in signatures.items():
        getattr(lib, name).argtypes, getattr(lib, name).restype = argtypes, None
    return lib


def _kernel() -> Any:
    """The kernel, where `compiled` has said it is there."""
    lib = kernel()
    assert lib is not None
    return lib


def _build(compiler: str, library: Path) -> None:
    library.parent.mkdir(parents=True, exist_ok=True)
    tmp = library.with_suffix(f".{os.getpid()}.tmp")
    command = [compiler, "-O3", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-lm"]
    subprocess.run(command, capture_output=True, text=True, check=True)
    tmp.replace(library)  # atomic: workers building at once never load a half-written file


def compiled(points: Tensor) -> bool:
    """Whether the compiled kernel serves these points: float32 on a CPU, with a C compiler on the machine."""
    return points.device.type == "cpu" and points.dtype == torch.float32 and kernel() is not None


def lookup(table: Tensor, points: Tensor, resolutions: list[int]) -> Tensor:
    """Features [N, L·F] of `points` [N, 3] in [-1, 1]³; differentiable in `table` (not in the points, which no
    caller moves)."""
    if _on_kernel(table, points):
        return _KernelLookup.apply(table, points.contiguous(), tuple(resolutions))
    return reference_lookup(table, points, resolutions)[0]


def weighted_gradient(table: Tensor, points: Tensor, resolutions: list[int], u: Tensor) -> Tensor:
    """[N, 3]: per point, ∇ₚ(u · features(p)) with u [N, L·F] held fixed, the features' derivatives contracted as
    they are read and never stored; differentiable in `table` and `u`."""
    if _on_kernel(table, points):
        return _KernelGradient.apply(table, points.contiguous(), tuple(resolutions), u)
    jac = reference_lookup(table, points, resolutions, jacobian=True)[1]
    return torch.einsum("nkd,nd->nk", jac, u)


def _on_kernel(table: Tensor, points: Tensor) -> bool:
    if points.requires_grad:
        raise ValueError("the fused grid lookup does not differentiate in the points")
    return table.dtype == torch.float32 and compiled(points)


def reference_lookup(
    table: Tensor, points: Tensor, resolutions: list[int], jacobian: bool = False
) -> tuple[Tensor, Tensor | None]:
    """The same maths as the kernel in torch ops: the fallback, and the kernel's tested reference."""
    values, derivatives = [], []
    for r, offset in zip(resolutions, _offsets(resolutions)):
        rows, w, dw = _corners(points, r, offset)  # [N, 8], [N, 8], [N, 3, 8]
        v = table[rows]  # [N, 8, F]
        values.append((w[..., None] * v).sum(1))  # [N, F]
        if jacobian:
            derivatives.append(torch.einsum("nkc,ncf->nkf", dw, v))  # [N, 3, F]
    out = torch.cat(values, 1)
    return out, torch.cat(derivatives, 2) if jacobian else None


def _corners(points: Tensor, r: int, offset: int) -> tuple[Tensor, Tensor, Tensor]:
    """Rows [N, 8], weights [N, 8] and weight derivatives [N, 3 (x, y, z), 8] of each point's corners."""
    p = (points.flip(1) + 1) * 0.5 * (r - 1)  # [N, 3] (z, y, x) voxel coordinates
    lo = p.floor().clamp(0, r - 2)
    frac = (p - lo).clamp(0, 1)
    idx = lo.long()[:, None, :] + _CORNERS.to(points.device)  # [N, 8, 3]
    rows = offset + (idx[..., 0] * r + idx[..., 1]) * r + idx[..., 2]
    corner = _CORNERS.to(points.device).bool()  # [8, 3]
    per_axis = torch.where(corner, frac[:, None, :], 1 - frac[:, None, :])  # [N, 8, 3] (z, y, x)
    slope = torch.where(corner, 0.5 * (r - 1), -0.5 * (r - 1)).to(points.dtype)  # [8, 3]
    w = per_axis.prod(-1)
    dw = torch.stack([_replace_axis(per_axis, slope, a).prod(-1) for a in (2, 1, 0)], 1)  # x, y, z
    return rows, w, dw


def _replace_axis(per_axis: Tensor, slope: Tensor, axis: int) -> Tensor:
    out = per_axis.clone()
    out[..., axis] = slope[:, axis]
    return out


def _offsets(resolutions: list[int]) -> list[int]:
    offsets = [0]
    for r in resolutions[:-1]:
        offsets.append(offsets[-1] + r**3)
    return offsets


class _KernelLookup(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, points: Tensor, resolutions: tuple[int, ...]) -> Tensor:
        table = table.contiguous()
        out = points.new_empty(points.shape[0], table.shape[1] * len(resolutions))
        _kernel().trilinear_forward(_ptr(table), _ptr(points), *_shape(points, table.shape, resolutions), _ptr(out))
        ctx.save_for_backward(points)
        ctx.resolutions, ctx.table_shape = resolutions, table.shape
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        (points,) = ctx.saved_tensors
        n, levels, features, res, off = _shape(points, ctx.table_shape, ctx.resolutions)
        grad_table = points.new_empty(ctx.table_shape)
        _kernel().trilinear_backward(
            _ptr(points),
            n,
            levels,
            features,
            res,
            off,
            _ptr(grad_out.contiguous()),
            _ptr(grad_table),
            ctx.table_shape[0],
        )
        return grad_table, None, None


class _KernelGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, points: Tensor, resolutions: tuple[int, ...], u: Tensor) -> Tensor:
        table, u = table.contiguous(), u.contiguous()
        out = points.new_empty(points.shape[0], 3)
        _kernel().trilinear_gradient(
            _ptr(table), _ptr(points), *_shape(points, table.shape, resolutions), _ptr(u), _ptr(out)
        )
        ctx.save_for_backward(table, points, u)
        ctx.resolutions = resolutions
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        table, points, u = ctx.saved_tensors
        grad_table, grad_u = torch.empty_like(table), torch.empty_like(u)
        _kernel().trilinear_gradient_backward(
            _ptr(table),
            _ptr(points),
            *_shape(points, table.shape, ctx.resolutions),
            _ptr(u),
            _ptr(grad_out.contiguous()),
            _ptr(grad_table),
            table.shape[0],
            _ptr(grad_u),
        )
        return grad_table, None, None, grad_u


def _shape(points: Tensor, table_shape: torch.Size, resolutions: tuple[int, ...]) -> tuple:
    """The kernel's (n, levels, features, resolutions, offsets) arguments."""
    res, off = _longs(resolutions), _longs(_offsets(list(resolutions)))
    return points.shape[0], len(resolutions), table_shape[1], _ptr(res), _ptr(off)


class _ptr(ctypes.c_void_p):
    """A pointer to a tensor's data that holds the tensor, so that a temporary (`x.contiguous()`) outlives the
    call it is passed to."""

    def __init__(self, tensor: Tensor) -> None:
        super().__init__(tensor.data_ptr())
        self.tensor = tensor


def _longs(values) -> Tensor:
    return torch.tensor(list(values), dtype=torch.int64)
