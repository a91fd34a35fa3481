"""Both diffusers adapters at full size on a GPU, before anyone spends a GPU-hour on weights: Stable Diffusion
2.1-base and DeepFloyd IF-I-XL built from their shipped configs with random weights (`random:...`), loaded in
float16 on CUDA, then SDS steps as a trial takes them (a 64 px render → model space → guided ε̂ of both CFG halves
→ the gradient back to the render). Per prior: load time, time per step, peak CUDA memory, whether ε̂ and the
render's gradient stay finite in float16 and how large ε̂ gets, and that no prior parameter got a gradient.

    python benchmarks/adapter_check.py [--steps 5] [--cpu --tiny]

Prints a Markdown table; --cpu --tiny runs the same code on the tiny pipelines of tests/tiny_pipelines.py in
float32 (a smoke run of this script). The last line is `adapters ok=<0|1>`.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from dreamfusion.config.schema import PriorConfig, SDSConfig
from dreamfusion.priors.base import Prior, load_prior
from dreamfusion.sds.sds import SDS

ROOT = Path(__file__).resolve().parents[1]
GIB = 1024**3
PRIORS = {"stable-diffusion": "random:sd-2.1-base", "deepfloyd-if": "random:if-i-xl"}


def sds_step(prior: Prior, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One SDS step at guidance 100 from a random 64 px render; (ε̂, the render's gradient)."""
    device = prior.device
    rgb = torch.rand(1, 3, 64, 64, generator=generator).to(device).requires_grad_(True)  # [1, 3, 64, 64]
    x = prior.to_model_space(rgb)
    noise = torch.randn(x.shape, generator=generator).to(device)
    t = torch.randint(20, 981, (1,), generator=generator).to(device)
    cond, uncond = prior.text_embeddings(["a hamburger, front view"]), prior.text_embeddings([""])
    out = SDS(SDSConfig(guidance_scale=100.0))(prior, x, t, cond, uncond, noise)
    out.loss.backward()
    assert rgb.grad is not None
    return out.eps_hat.detach(), rgb.grad


def check(kind: str, model: str, device: str, dtype: str, steps: int) -> tuple[str, bool]:
    """One Markdown row, and whether everything held."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    prior = load_prior(PriorConfig(kind=kind, model=model, dtype=dtype), device)
    load_s = time.perf_counter() - started
    g = torch.Generator().manual_seed(0)
    sds_step(prior, g)  # warm-up: kernel selection, allocator
    finite, largest, times = True, 0.0, []
    for _ in range(steps):
        if cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        eps, grad = sds_step(prior, g)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
        finite &= bool(torch.isfinite(eps).all() and torch.isfinite(grad).all())
        largest = max(largest, float(eps.abs().max()))
    frozen = all(p.grad is None for m in vars(prior).values() if isinstance(m, torch.nn.Module) for p in m.parameters())
    peak = torch.cuda.max_memory_allocated() / GIB if cuda else float("nan")
    params = sum(p.numel() for m in vars(prior).values() if isinstance(m, torch.nn.Module) for p in m.parameters())
    ms = 1000 * sum(times) / len(times)
    ok = finite and frozen
    row = (
        f"| {kind} | {model.split('/')[-1]} | {params / 1e9:.2f} B | {dtype_of(prior)} | {load_s:.1f} | "
        f"{ms:.0f} | {peak:.1f} | {'yes' if finite else 'NO'} | {largest:.2f} | {'yes' if frozen else 'NO'} |"
    )
    del prior
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return row, ok


def dtype_of(prior: Prior) -> str:
    return str(prior.dtype).removeprefix("torch.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5, help="timed SDS steps per prior (after one warm-up)")
    parser.add_argument("--cpu", action="store_true", help="on the CPU in float32 (with --tiny: a smoke run)")
    parser.add_argument("--tiny", action="store_true", help="the tiny pipelines instead of the full-size ones")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        print("adapter_check: no CUDA GPU on this machine (--cpu --tiny smoke-runs the script)")
        return 0
    device, dtype = ("cpu", "float32") if args.cpu else ("cuda", "float16")
    print(f"adapter_check on {'CPU' if args.cpu else torch.cuda.get_device_name(0)}; torch {torch.__version__}")
    print("| prior | model | params | dtype | load s | ms / SDS step | peak CUDA GiB | finite | max abs ε̂ | frozen |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    with tempfile.TemporaryDirectory(prefix="dfs-adapters-") as tmp:
        for kind, model in models(args, Path(tmp)).items():
            row, passed = check(kind, model, device, dtype, args.steps)
            print(row, flush=True)
            ok &= passed
    print(f"adapters ok={int(ok)}")
    return 0 if ok else 1


def models(args: argparse.Namespace, work: Path) -> dict[str, str]:
    if not args.tiny:
        return PRIORS
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_pipelines import make_tiny_if, make_tiny_sd

    return {"stable-diffusion": str(make_tiny_sd(work / "sd")), "deepfloyd-if": str(make_tiny_if(work / "if"))}


if __name__ == "__main__":
    raise SystemExit(main())
