"""One SDS optimisation step: random cameras and shading, render, the loss against the prior, regularisers, and
the update. Every random draw comes from the trial's checkpointed generator, in a fixed order."""

from __future__ import annotations

import time

import torch

from dreamfusion.config.schema import RenderConfig, SDSConfig, TrialConfig
from dreamfusion.nerf.cameras import sample_cameras, sample_lights, view_prompt
from dreamfusion.nerf.render import SHADING_MODES, Lighting
from dreamfusion.priors.base import Prior
from dreamfusion.sds.loss import LossContext, make_loss
from dreamfusion.sds.schedules import Schedule, make_schedule
from dreamfusion.timing import Laps
from dreamfusion.trial.state import TrialState

OCCUPANCY_EVERY = 8  # steps between refreshes of the occupancy grid


class SDSStep:
    """The step of one trial: built once from the config and the prior, called with the state each step."""

    def __init__(self, cfg: TrialConfig, prior: Prior) -> None:
        self.cfg, self.prior = cfg, prior
        prior.use_speed(cfg.speed)
        self.schedule = make_schedule(cfg.sds.timesteps, cfg.steps, prior.alphas_cumprod, cfg.seed)
        self.loss = make_loss(cfg.sds)
        self.loss.start(prior, cfg.seed)
        self.uncond = prior.text_embedding("")  # [1, ...]

    def __call__(self, state: TrialState) -> dict[str, float]:
        cfg, g, device = self.cfg, state.generator, self.prior.device
        t0 = time.perf_counter()
        lap = Laps()
        ramped = cfg.apply_ramps(state.step)  # every part of the step reads the ramped keys' values of this step
        if any(key.startswith("optim.") for key in ramped):
            state.follow_optim_config()
        if state.step % OCCUPANCY_EVERY == 0:
            state.occupancy.update(state.field.density)
        lap("occupancy")
        cams = sample_cameras(cfg.camera, cfg.render.views_per_step, g)
        seen_from = cams.to(device)  # the lights draw on the CPU generator beside `cams`
        lighting = Lighting(
            choose_shading(cfg.render, state.step, g),
            sample_lights(cams, g).to(device),
            cfg.render.ambient,
            cfg.render.diffuse,
        )
        bg = torch.rand(3, generator=g).to(device) if cfg.render.background == "random" else None
        lap("cameras")
        out = state.render(seen_from, lighting, g, bg, need_normals=cfg.reg.orientation > 0)
        lap("render")
        x = self.prior.to_model_space(out.rgb, g)  # [B, C, h, w]
        b = x.shape[0]
        prompts = [
            view_prompt(cfg.prompt, float(e), float(a), cfg.camera.view_dependent_prompt)
            for e, a in zip(cams.elevation, cams.azimuth)
        ]
        t = draw_timesteps(self.schedule, state.step, b, cfg.sds.timesteps.per_view, g).to(device)
        noise = torch.randn(x.shape, generator=g).to(device)
        res = self.loss(
            self.prior,
            x,
            t,
            self.prior.text_embeddings(prompts),
            self.uncond.expand(b, *self.uncond.shape[1:]),
            noise,
            LossContext(seen_from, self.prior.text_embeddings([cfg.prompt] * b), g),
        )
        lap("sds")
        regs = {
            "orientation": out.orientation,
            "opacity_entropy": out.opacity_entropy,
            **(state.field.regularisers() if cfg.reg.density_tv > 0 else {}),
            **({"sparsity": (out.opacity**2 + 0.01).sqrt().mean()} if cfg.reg.sparsity > 0 else {}),
        }
        loss = res.loss + sum(getattr(cfg.reg, k) * v for k, v in regs.items())
        check_finite(loss, state.step + 1)
        state.nonfinite_streak = nonfinite_streak(float(res.nonfinite), state.nonfinite_streak, cfg.sds, state.step + 1)
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
            "t": float(t.float().mean()),  # the step's t; the mean of its views' with `per_view`
            "opacity": float(out.opacity.detach().mean()),
            "nonfinite": float(res.nonfinite),
            **{f"reg_{k}": v.item() for k, v in regs.items()},
            **{f"ramp.{key}": value for key, value in ramped.items()},
            "step_ms": (time.perf_counter() - t0) * 1000,
        }


def draw_timesteps(
    schedule: Schedule, step: int, views: int, per_view: bool, generator: torch.Generator
) -> torch.Tensor:
    """[views] long: the schedule's t for the step, once for every view, or drawn per view (`per_view`, threestudio's
    `randint(min_step, max_step + 1, [batch_size])`)."""
    t = torch.tensor([schedule(step, generator) for _ in range(views if per_view else 1)], dtype=torch.long)
    return t.expand(views)


def choose_shading(cfg: RenderConfig, step: int, generator: torch.Generator) -> str:
    """Albedo only during the warm-up (no draw), else a draw from the shading mix."""
    if step < cfg.albedo_warmup:
        return "albedo"
    mix = cfg.shading
    probs = torch.tensor([mix.albedo, mix.lambertian, mix.textureless])
    return SHADING_MODES[int(torch.multinomial(probs, 1, generator=generator))]


def check_finite(loss: torch.Tensor, step: int) -> None:
    """Stop before the update, so the last checkpoint stays clean: a non-finite loss would reach every
    parameter."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}")


def nonfinite_streak(fraction: float, streak: int, cfg: SDSConfig, step: int) -> int:
    """The loss zeroes the gradient elements whose ε̂ is non-finite, as the reference implementations do, so one
    stray fp16 NaN costs one element of one step. A prior that stays non-finite would instead train on the
    regularisers alone and report a quiet, meaningless run: above `nonfinite_tolerance` for `nonfinite_patience`
    steps in a row, the trial fails before that step's update. Returns the new count of such steps in a row (it is
    checkpointed with the trial, so a resumed trial does not start counting afresh)."""
    streak = streak + 1 if fraction > cfg.nonfinite_tolerance else 0
    if streak >= cfg.nonfinite_patience:
        raise FloatingPointError(
            f"prior prediction became non-finite ({100 * fraction:.3g}% of ε̂ at step {step}; above "
            f"{100 * cfg.nonfinite_tolerance:.3g}% for {streak} steps in a row)"
        )
    return streak
