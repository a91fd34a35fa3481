"""The fused grid lookup (`dreamfusion/nerf/trilinear.py`): its values against `grid_sample`, its derivatives
against autograd, the compiled kernel against the torch reference, and the field's exact gradient and normals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from dreamfusion.config.schema import NerfConfig
from dreamfusion.nerf.field import NeRFField, finite_difference_normals
from dreamfusion.nerf.trilinear import kernel, level_table, lookup, reference_lookup, weighted_gradient

torch.set_num_threads(1)
SIZES = ("tiny", "small", "medium")


def _grids(size: str, seed: int = 0) -> tuple[list[torch.nn.Parameter], list[int]]:
    """Unit-scale random grids of a preset (the field's own are 1e-2 at init: too small to show rounding)."""
    field = NeRFField(NerfConfig(size=size))
    torch.manual_seed(seed)
    for g in field.encoding.levels:
        g.data.normal_()
    return list(field.encoding.levels), field.encoding.resolutions


def _points(n: int = 2000, seed: int = 1) -> torch.Tensor:
    """Random points, and the cube's corners, edges and faces where the last cell is clamped."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0], [1.0, -1.0, 0.3], [0.0, 0.0, 0.0], [-1.0, 0.5, 1.0]])
    return torch.cat([edges, torch.rand(n, 3, generator=g) * 2 - 1])


def _grid_sample(levels: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    grid = x.view(1, -1, 1, 1, 3)
    feats = [F.grid_sample(g, grid, mode="bilinear", align_corners=True) for g in levels]
    return torch.cat(feats, 1).view(-1, x.shape[0]).t()


@pytest.mark.parametrize("size", SIZES)
def test_fused_lookup_is_grid_sample_to_float_rounding(size):
    levels, res = _grids(size)
    x = _points()
    fused = lookup(level_table(levels), x, res)
    assert torch.allclose(fused, _grid_sample(levels, x), atol=2e-6, rtol=0)


@pytest.mark.parametrize("size", SIZES)
def test_the_references_jacobian_and_the_weighted_gradient_are_autograds_derivatives(size):
    """Inside a cell trilinear interpolation is smooth, so autograd through the torch gathers is the exact
    derivative that both compute from the corners."""
    levels, res = _grids(size)
    table = level_table(levels).detach()
    x = _points(300)[5:]  # random points: on no cell boundary
    u = torch.randn(x.shape[0], table.shape[1] * len(res), generator=torch.Generator().manual_seed(4))
    _, jac = reference_lookup(table, x, res, jacobian=True)
    xr = x.clone().requires_grad_()
    feats, _ = reference_lookup(table, xr, res)
    for d in range(feats.shape[1]):
        (grad,) = torch.autograd.grad(feats[:, d].sum(), xr, retain_graph=True)
        assert torch.allclose(jac[:, :, d], grad, atol=1e-4, rtol=1e-5), d
    (grad,) = torch.autograd.grad((feats * u).sum(), xr)
    assert torch.allclose(weighted_gradient(table, x, res, u), grad, atol=1e-4, rtol=1e-5)


def _values_and_grads(fn, levels, x, res, seed: int = 2):
    """fn's values and its gradients in the grids (and in u, for the weighted gradient) under a random cotangent."""
    g = torch.Generator().manual_seed(seed)
    width = len(res) * levels[0].shape[1]
    u = torch.randn(x.shape[0], width, generator=g).requires_grad_()
    for level in levels:
        level.grad = None
    out = fn(level_table(levels), x, res, u)
    (out * torch.randn(out.shape, generator=g)).sum().backward()
    return [out.detach(), *(level.grad.clone() for level in levels), u.grad.clone() if u.grad is not None else None]


def _reference(table, x, res, u):
    return reference_lookup(table, x, res)[0]


def _reference_gradient(table, x, res, u):
    return torch.einsum("nkd,nd->nk", reference_lookup(table, x, res, jacobian=True)[1], u)


@pytest.mark.skipif(kernel() is None, reason="no C compiler: the lookup runs as the reference")
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    "fast, reference",
    [(lambda t, x, r, u: lookup(t, x, r), _reference), (weighted_gradient, _reference_gradient)],
    ids=["lookup", "weighted_gradient"],
)
def test_kernel_matches_the_reference_forward_and_backward(size, fast, reference):
    levels, res = _grids(size)
    x = _points()
    ours, theirs = _values_and_grads(fast, levels, x, res), _values_and_grads(reference, levels, x, res)
    assert torch.allclose(ours[0], theirs[0], atol=1e-4, rtol=1e-5)
    for a, b in zip(ours[1:], theirs[1:]):
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-3, rtol=1e-5)  # sums in another order


@pytest.mark.parametrize("fn", [lambda t, x, r, u: lookup(t, x, r), weighted_gradient], ids=["lookup", "gradient"])
def test_the_lookup_gives_the_same_bits_every_time(fn):
    levels, res = _grids("small")
    x = _points()
    first, second = _values_and_grads(fn, levels, x, res), _values_and_grads(fn, levels, x, res)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(first, second))


def test_off_the_kernels_path_the_reference_runs():
    """float64 (or a GPU) takes the torch gathers: the same numbers as the reference called directly."""
    levels, res = _grids("tiny")
    table = level_table([g.double() for g in levels])
    x = _points().double()
    u = torch.rand(x.shape[0], table.shape[1] * len(res), dtype=torch.float64)
    assert torch.equal(lookup(table, x, res), reference_lookup(table, x, res)[0])
    assert torch.equal(weighted_gradient(table, x, res, u), _reference_gradient(table, x, res, u))


def test_points_that_want_a_gradient_are_refused():
    levels, res = _grids("tiny")
    with pytest.raises(ValueError, match="does not differentiate in the points"):
        lookup(level_table(levels), _points(10).requires_grad_(), res)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("fused", [False, True])
def test_field_with_gradient_is_the_autograd_gradient_of_its_density(size, fused):
    """σ and albedo are exactly the field's own; ∇σ is autograd's through the torch reference (grid, decoder with
    its ReLU masks, the blob and the softplus)."""
    field = NeRFField(NerfConfig(size=size), fused_grid=fused)
    torch.manual_seed(3)
    for p in field.parameters():
        p.data.normal_(0, 0.5)
    x = _points(400)[5:] * 0.9
    sigma, albedo, grad = field.with_gradient(x)
    own_sigma, own_albedo = field(x)
    assert torch.allclose(sigma, own_sigma, atol=1e-5, rtol=1e-6) and torch.allclose(albedo, own_albedo, atol=1e-6)
    xr = x.clone().requires_grad_()
    feats, _ = reference_lookup(level_table(list(field.encoding.levels)), xr, field.encoding.resolutions)
    density = F.softplus(field.decoder(feats)[:, 0] + field.blob(xr))
    (expected,) = torch.autograd.grad(density.sum(), xr)
    assert torch.allclose(grad, expected, atol=1e-4, rtol=1e-4)


def test_the_blobs_exact_normals_point_outward_and_agree_with_finite_differences():
    """With the grid and decoder at zero, σ = softplus(blob(x)) is radial: −∇σ/|∇σ| = x/|x| exactly; finite
    differences of a step far below the blob's scale agree."""
    field = NeRFField(NerfConfig(size="small"), fused_grid=True)
    for p in field.parameters():
        p.data.zero_()
    x = _points(200)[5:] * 0.8
    sigma, _, grad = field.with_gradient(x)
    outward = x / x.norm(dim=-1, keepdim=True)
    assert torch.allclose(-grad / grad.norm(dim=-1, keepdim=True), outward, atol=1e-5)
    fd = finite_difference_normals(field.density, x, sigma, 1e-3)
    assert (fd * outward).sum(-1).min() > 0.999


def test_without_a_compiler_the_fused_field_reads_with_grid_sample(tmp_path):
    """A machine whose C compiler is missing (here: CC names none, an empty kernel cache) warns once and renders
    exactly what the unfused field renders."""
    script = (
        "import warnings, torch\n"
        "from dreamfusion.config.schema import NerfConfig\n"
        "from dreamfusion.nerf.field import NeRFField\n"
        "torch.manual_seed(0); plain = NeRFField(NerfConfig(size='small'))\n"
        "fused = NeRFField(NerfConfig(size='small'), fused_grid=True); fused.load_state_dict(plain.state_dict())\n"
        "x = torch.rand(500, 3) * 2 - 1\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    same = all(torch.equal(a, b) for a, b in zip(plain(x), fused(x)))\n"
        "print(same, [str(w.message) for w in caught])\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "DF_SWEEP_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.startswith("True") and "could not be built" in out and "grid_sample is used" in out
