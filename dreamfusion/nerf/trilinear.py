"""Every level of a dense grid read in one pass, with the reads' spatial derivatives: the fused lookup.

`grid_sample` reads one level per call, and its CPU backward scatters into the grid one sample at a time; the
renderer's finite-difference normals then read the field three more times. A point's 8 corners give its trilinear
value and, from the same corners, its exact gradient (trilinear interpolation is linear along each axis inside a
cell), so one pass serves both. The pass is a small C kernel (`trilinear.c`) compiled on first use with the
machine's C compiler and cached (`dreamfusion.cache`); without a compiler, or on a GPU, the same maths runs as
torch gathers (`reference_lookup`), slower on CPU but exact to float rounding.
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
        warnings.warn("no C compiler found: the fused grid lookup runs as torch gathers", stacklevel=2)
        return None
    key = hashlib.sha256(SOURCE.read_bytes() + compiler.encode() + sys.platform.encode()).hexdigest()[:16]
    library = cache_dir() / "kernels" / f"trilinear-{key}.so"
    if not library.is_file():
        library.parent.mkdir(parents=True, exist_ok=True)
        tmp = library.with_suffix(f".{os.getpid()}.tmp")
        built = subprocess.run(
            [compiler, "-O3", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True
        )
        if built.returncode != 0:
            warnings.warn(
                f"the fused grid lookup did not compile ({built.stderr.strip()[:200]}): it runs as torch gathers",
                stacklevel=2,
            )
            return None
        tmp.replace(library)  # atomic: workers building at once never load a half-written file
    lib = ctypes.CDLL(str(library))
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.trilinear_forward.argtypes = [ptr, ptr, i64, i64, i64, ptr, ptr, ptr, ptr]
    lib.trilinear_backward.argtypes = [ptr, i64, i64, i64, ptr, ptr, ptr, ptr, ptr, i64]
    lib.trilinear_forward.restype = lib.trilinear_backward.restype = None
    return lib


def lookup(
    table: Tensor, points: Tensor, resolutions: list[int], jacobian: bool = False
) -> tuple[Tensor, Tensor | None]:
    """Features [N, L·F] of `points` [N, 3] in [-1, 1]³ and, with `jacobian`, their derivatives [N, 3, L·F] along
    x, y, z; differentiable in `table` (not in the points, which no caller moves)."""
    if points.requires_grad:
        raise ValueError("the fused grid lookup does not differentiate in the points")
    if table.device.type == "cpu" and table.dtype == torch.float32 and kernel() is not None:
        return _KernelLookup.apply(table, points.contiguous(), tuple(resolutions), jacobian)
    return reference_lookup(table, points, resolutions, jacobian)


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
    def forward(ctx, table: Tensor, points: Tensor, resolutions: tuple[int, ...], jacobian: bool):
        table = table.contiguous()
        n, width = points.shape[0], table.shape[1] * len(resolutions)
        out = points.new_empty(n, width)
        jac = points.new_empty(n, 3, width) if jacobian else None
        res, off = _longs(resolutions), _longs(_offsets(list(resolutions)))
        kernel().trilinear_forward(
            _ptr(table),
            _ptr(points),
            n,
            len(resolutions),
            table.shape[1],
            _ptr(res),
            _ptr(off),
            _ptr(out),
            _ptr(jac),
        )
        ctx.save_for_backward(points)
        ctx.meta = (resolutions, table.shape)
        return out, jac

    @staticmethod
    def backward(ctx, grad_out: Tensor | None, grad_jac: Tensor | None):
        (points,) = ctx.saved_tensors
        resolutions, shape = ctx.meta
        grad_table = points.new_empty(shape)
        width = shape[1] * len(resolutions)
        go = grad_out.contiguous() if grad_out is not None else points.new_zeros(points.shape[0], width)
        gj = grad_jac.contiguous() if grad_jac is not None else None
        res, off = _longs(resolutions), _longs(_offsets(list(resolutions)))
        kernel().trilinear_backward(
            _ptr(points),
            points.shape[0],
            len(resolutions),
            shape[1],
            _ptr(res),
            _ptr(off),
            _ptr(go),
            _ptr(gj),
            _ptr(grad_table),
            shape[0],
        )
        return grad_table, None, None, None


def _longs(values) -> Tensor:
    return torch.tensor(list(values), dtype=torch.int64)


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(None if t is None else t.data_ptr())
