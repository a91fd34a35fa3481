"""One SDS optimisation step: random cameras and shading, render, the loss against the prior, regularisers, and
the update. Every random draw comes from the trial's checkpointed generator, in a fixed order."""

from __future__ import annotations

import time

import torch

from dreamfusion.config.schema import TrialConfig
from dreamfusion.nerf.cameras import sample_cameras, sample_lights, view_prompt
from dreamfusion.nerf.render import SHADING_MODES, Lighting
from dreamfusion.priors.base import Prior
from dreamfusion.sds.loss import make_loss
from dreamfusion.sds.schedules import make_schedule
from dreamfusion.timing import Laps
from dreamfusion.trial.state import TrialState

OCCUPANCY_EVERY = 8  # steps between refreshes of the occupancy grid


class SDSStep:
    """The step of one trial: built once from the config and the prior, called with the state each step."""

    def __init__(self, cfg: TrialConfig, prior: Prior) -> None:
        self.cfg, self.prior = cfg, prior
        self.schedule = make_schedule(cfg.sds.timesteps, cfg.steps, prior.alphas_cumprod, cfg.seed)
        self.loss = make_loss(cfg.sds)
        self.uncond = prior.text_embedding("")  # [1, ...]

    def __call__(self, state: TrialState) -> dict[str, float]:
        cfg, g, device = self.cfg, state.generator, self.prior.device
        t0 = time.perf_counter()
        lap = Laps()
        if state.step % OCCUPANCY_EVERY == 0:
            state.occupancy.update(state.field.density)
        lap("occupancy")
        cams = sample_cameras(cfg.camera, cfg.render.views_per_step, g)
        lighting = Lighting(
            self._choose_shading(g), sample_lights(cams, g).to(device), cfg.render.ambient, cfg.render.diffuse
        )
        bg = torch.rand(3, generator=g).to(device) if cfg.render.background == "random" else None
        lap("cameras")
        out = state.render(cams.to(device), lighting, g, bg, need_normals=cfg.reg.orientation > 0)
        lap("render")
        x = self.prior.to_model_space(out.rgb)  # [B, C, h, w]
        b = x.shape[0]
        prompts = [
            view_prompt(cfg.prompt, float(e), float(a), cfg.camera.view_dependent_prompt)
            for e, a in zip(cams.elevation, cams.azimuth)
        ]
        t = torch.full((b,), self.schedule(state.step, g), dtype=torch.long, device=device)
        noise = torch.randn(x.shape, generator=g).to(device)
        res = self.loss(
            self.prior, x, t, self.prior.text_embeddings(prompts), self.uncond.expand(b, *self.uncond.shape[1:]), noise
        )
        lap("sds")
        regs = {
            "orientation": out.orientation,
            "opacity_entropy": out.opacity_entropy,
            **(state.field.regularisers() if cfg.reg.density_tv > 0 else {}),
        }
        loss = res.loss + sum(getattr(cfg.reg, k) * v for k, v in regs.items())
        check_finite(loss, res.eps_hat, state.step + 1)
        lap("regularisers")
        state.optim.zero_grad(set_to_none=True)
        loss.backward()
        lap("backward")
        state.optim.step()
        lap("optimiser")
        state.step += 1
        return {
            "loss": loss.item(),
            "loss_sds": res.loss.item(),
            "grad_norm": float(res.grad.flatten(1).norm(dim=1).mean()),
            "t": float(t[0]),
            "opacity": float(out.opacity.detach().mean()),
            **{f"reg_{k}": v.item() for k, v in regs.items()},
            "step_ms": (time.perf_counter() - t0) * 1000,
        }

    def _choose_shading(self, generator: torch.Generator) -> str:
        mix = self.cfg.render.shading
        probs = torch.tensor([mix.albedo, mix.lambertian, mix.textureless])
        return SHADING_MODES[int(torch.multinomial(probs, 1, generator=generator))]


def check_finite(loss: torch.Tensor, eps_hat: torch.Tensor, step: int) -> None:
    """Stop before the update, so the last checkpoint stays clean. The loss zeroes stray non-finite gradient
    elements, but a prior whose prediction is non-finite would otherwise train on the regularisers alone and
    report a quiet, meaningless run."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}")
    bad = (~torch.isfinite(eps_hat)).float().mean()
    if bad > 0:
        raise FloatingPointError(f"prior prediction became non-finite ({float(bad):.0%} of ε̂) at step {step}")
