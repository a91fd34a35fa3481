"""One SDS step at full Stable Diffusion 2.1-base size on the CPU, with the random-weight architecture (no
download): a 64 px render upsampled to 512 px → the VAE encoder → 64×64 latents → the 866 M-parameter UNet on both
CFG halves → the gradient back through the VAE encoder to the render. About 6 GB and minutes: the slow tier
(`bash scripts/test.sh --slow -m slow`); CI skips it. IF-I-XL (9 B parameters) is checked on the meta device only,
in tests/unit/priors/test_architectures.py."""

from __future__ import annotations

import torch

from dreamfusion.config.schema import PriorConfig, SDSConfig
from dreamfusion.priors.base import load_prior
from dreamfusion.sds.sds import SDS


def test_one_sds_step_at_full_size():
    prior = load_prior(PriorConfig(kind="stable-diffusion", model="random:sd-2.1-base"), "cpu")
    assert prior.dtype == torch.float32  # `auto` on a CPU
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(1, 3, 64, 64, generator=g, requires_grad=True)  # [1, 3, 64, 64] a render
    x = prior.to_model_space(rgb)
    assert x.shape == (1, 4, 64, 64) and x.dtype == torch.float32 and x.requires_grad
    cond, uncond = prior.text_embeddings(["a hamburger, front view"]), prior.text_embeddings([""])
    assert cond.shape == (1, 77, 1024) and cond.dtype == torch.float32
    noise = torch.randn(x.shape, generator=g)
    out = SDS(SDSConfig(guidance_scale=100.0))(prior, x, torch.tensor([500]), cond, uncond, noise)
    assert out.eps_hat.shape == x.shape and out.eps_hat.dtype == torch.float32
    assert torch.isfinite(out.eps_hat).all() and torch.isfinite(out.loss)
    out.loss.backward()
    assert rgb.grad is not None and torch.isfinite(rgb.grad).all() and rgb.grad.abs().sum() > 0
    for module in (prior.unet, prior.vae, prior.text_encoder):
        assert all(p.grad is None and not p.requires_grad for p in module.parameters())
