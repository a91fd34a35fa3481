"""One SDS trial: optimise a NeRF against a frozen prior, evaluate, checkpoint, and report through a callback.

Every sweep trial is this function. It knows nothing of Ray or MLflow: the sweep layer plugs them in as a
`TrialCallback`. All randomness (field init aside, seeded globally) comes from one `torch.Generator` that is
checkpointed, so the same seed gives the same metrics and a resumed trial continues exactly.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dreamfusion import images
from dreamfusion.config import TrialConfig, to_yaml
from dreamfusion.nerf.cameras import Cameras, ring_cameras, sample_cameras, sample_lights, view_prompt
from dreamfusion.nerf.field import Background, NeRFField, finest_voxel
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.nerf.render import SHADING_MODES, Lighting, RenderOutput, render
from dreamfusion.priors import load_prior
from dreamfusion.priors.base import Prior, resolve_device
from dreamfusion.scoring import Scorer, load_scorer, score_views
from dreamfusion.sds import diffusion_loss, sds
from dreamfusion.timesteps import TimestepSampler
from dreamfusion.toyworld import world

#: Metrics that measure time, not the optimisation: excluded when determinism is compared.
TIMING_METRICS = ("step_ms",)
EVAL_ELEVATION = 15.0
OCCUPANCY_EVERY = 8  # steps between refreshes of the occupancy grid


class TrialCallback:
    """Hooks the sweep layer implements; each default does nothing."""

    def on_start(self, cfg: TrialConfig, start_step: int, info: dict[str, str]) -> None: ...

    def on_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def on_eval(self, step: int, metrics: dict[str, float], render_path: Path, checkpoint: Path | None) -> None:
        """Called after each evaluation; `checkpoint` is the directory saved at this step, if any."""

    def on_end(self, result: TrialResult) -> None: ...


@dataclass
class TrialResult:
    metrics: dict[str, float]  # final eval metrics
    artifacts: dict[str, Path]  # name → file in the trial's out dir
    steps: int
    wall_s: float
    history: list[dict[str, float]] = field(default_factory=list)  # per-step metrics of this process's steps


class Trial:
    def __init__(self, cfg: TrialConfig, prior: Prior, scorer: Scorer, out: Path) -> None:
        self.cfg, self.prior, self.scorer, self.out = cfg, prior, scorer, out
        self.device = prior.device
        torch.manual_seed(cfg.seed)
        self.field = NeRFField(cfg.nerf).to(self.device)
        self.background = Background(cfg.render.background).to(self.device)
        self.occupancy = OccupancyGrid().to(self.device)
        self.optim = torch.optim.Adam(self._param_groups(), betas=cfg.optim.betas, eps=cfg.optim.eps)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.sampler = TimestepSampler(cfg.sds.timesteps, cfg.steps, prior.num_train_timesteps, cfg.seed)
        self.step = 0
        self.uncond = prior.text_embedding("")  # [1, ...]

    def _param_groups(self) -> list[dict]:
        o = self.cfg.optim
        groups = [
            {"params": list(self.field.encoding.parameters()), "lr": o.lr_grid, "name": "grid"},
            {"params": list(self.field.decoder.parameters()), "lr": o.lr_mlp, "name": "mlp"},
            {"params": list(self.background.parameters()), "lr": o.lr_background, "name": "background"},
        ]
        return [g for g in groups if g["params"]]

    # -- training ---------------------------------------------------------------------------------------------

    def _choose_shading(self) -> str:
        mix = self.cfg.render.shading
        probs = torch.tensor([mix.albedo, mix.lambertian, mix.textureless])
        return SHADING_MODES[int(torch.multinomial(probs, 1, generator=self.generator))]

    def _render(self, cams: Cameras, lighting: Lighting, generator: torch.Generator | None,
                bg: torch.Tensor | None, resolution: int, need_normals: bool) -> RenderOutput:
        r = self.cfg.render
        return render(self.field, self.background, cams, resolution, r.samples_per_ray, lighting, generator, bg,
                      normal_step=finest_voxel(self.cfg.nerf) / 2, need_normals=need_normals,
                      occupancy=self.occupancy)

    def train_step(self) -> dict[str, float]:
        cfg, g = self.cfg, self.generator
        t0 = time.perf_counter()
        if self.step % OCCUPANCY_EVERY == 0:
            self.occupancy.update(self.field.density)
        cams = sample_cameras(cfg.camera, cfg.render.views_per_step, g)
        lighting = Lighting(self._choose_shading(), sample_lights(cams, g).to(self.device),
                            cfg.render.ambient, cfg.render.diffuse)
        bg = torch.rand(3, generator=g).to(self.device) if cfg.render.background == "random" else None
        out = self._render(cams.to(self.device), lighting, g, bg, cfg.render.resolution,
                           need_normals=cfg.reg.orientation > 0)
        x = self.prior.to_model_space(out.rgb)  # [B, C, h, w]
        b = x.shape[0]
        prompts = [view_prompt(cfg.prompt, float(e), float(a), cfg.camera.view_dependent_prompt)
                   for e, a in zip(cams.elevation, cams.azimuth)]
        t = torch.full((b,), self.sampler(self.step, g), dtype=torch.long, device=self.device)
        noise = torch.randn(x.shape, generator=g).to(self.device)
        loss_fn = diffusion_loss if cfg.sds.jacobian else sds
        res = loss_fn(self.prior, x, t, self.prior.text_embeddings(prompts), self.uncond.expand(b, *self.uncond.shape[1:]),
                      cfg.sds, noise)
        regs = {"orientation": out.orientation, "opacity_entropy": out.opacity_entropy,
                **(self.field.regularisers() if cfg.reg.density_tv > 0 else {})}
        loss = res.loss + sum(getattr(cfg.reg, k) * v for k, v in regs.items())
        check_finite(loss, res.eps_hat, self.step + 1)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.step += 1
        return {
            "loss": loss.item(), "loss_sds": res.loss.item(), "grad_norm": float(res.grad.flatten(1).norm(dim=1).mean()),
            "t": float(t[0]), "opacity": float(out.opacity.detach().mean()),
            **{f"reg_{k}": v.item() for k, v in regs.items()},
            "step_ms": (time.perf_counter() - t0) * 1000,
        }

    # -- evaluation -------------------------------------------------------------------------------------------

    def eval_cameras(self, n: int, offset: float = 0.0) -> Cameras:
        c = self.cfg.camera
        return ring_cameras(n, EVAL_ELEVATION, sum(c.distance) / 2, c.fov, offset).to(self.device)

    @torch.no_grad()
    def render_views(self, cams: Cameras, shading: str) -> RenderOutput:
        """Deterministic renders (no jitter) lit from above the camera, on the config's background."""
        light = Lighting(shading, eval_lights(cams), self.cfg.render.ambient, self.cfg.render.diffuse)
        bg = torch.ones(3, device=self.device) if self.cfg.render.background == "random" else None
        return self._render(cams, light, None, bg, self.cfg.render.resolution, need_normals=True)

    def evaluate(self) -> tuple[dict[str, float], torch.Tensor]:
        """Scores of the eval ring and the [2V, 3, H, W] renders (lit colour row, textureless row)."""
        cams = self.eval_cameras(self.cfg.eval.views)
        colour = self.render_views(cams, "lambertian")
        geometry = self.render_views(cams, "textureless")
        metrics = score_views(self.scorer, colour.rgb, geometry.rgb, self.cfg.prompt, self.cfg.eval.prompt_set)
        metrics.update(self._ground_truth_scores(cams, colour))
        return metrics, torch.cat([colour.rgb, geometry.rgb])

    def _ground_truth_scores(self, cams: Cameras, colour: RenderOutput) -> dict[str, float]:
        """Toy-world prompts have exact 3D ground truth: silhouette IoU and foreground colour error."""
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None:
            return {}
        albedo = world.WHITE if caption.colour is None else world.COLOURS[caption.colour]
        with torch.no_grad():
            truth = render(world.ShapeField(caption.shape, albedo), world.white_background, cams,
                           self.cfg.render.resolution, 96, Lighting("albedo", None), need_normals=False)
            mask = colour.opacity > 0.5
            gt = truth.opacity > 0.5
            iou = (mask & gt).sum() / (mask | gt).sum().clamp_min(1)
            flat = self._render(cams, Lighting("albedo", None), None, None, self.cfg.render.resolution, False)
            mean = _masked_mean(flat.rgb, mask)
            err = (mean - torch.tensor(albedo, device=mean.device)).norm()
        return {"gt_iou": float(iou), "gt_colour_error": float(err)}

    def ground_truth_retrieval(self) -> dict[str, float]:
        """R-precision of the true object's own renders from the eval views: the ceiling a trial is read against
        (DreamFusion's "GT images" row). Only toy-world prompts have a true object."""
        caption = world.parse_prompt(self.cfg.prompt)
        if caption is None or caption.colour is None:
            return {}
        cams = self.eval_cameras(self.cfg.eval.views)
        res = self.cfg.render.resolution
        colour = world.render_caption(caption, cams, res, eval_lights(cams))
        geometry = world.render_caption(world.Caption(caption.shape, None), cams, res, eval_lights(cams))
        scores = score_views(self.scorer, colour, geometry, self.cfg.prompt, self.cfg.eval.prompt_set)
        return {f"gt_{k}": v for k, v in scores.items() if k != "clip_score"}

    # -- checkpoints ------------------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {"field": self.field.state_dict(), "background": self.background.state_dict(),
                "occupancy": self.occupancy.state_dict(),
                "optim": self.optim.state_dict(), "step": self.step, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.field.load_state_dict(state["field"])
        self.background.load_state_dict(state["background"])
        self.occupancy.load_state_dict(state["occupancy"])
        self.optim.load_state_dict(state["optim"])
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])

    def save_checkpoint(self) -> Path:
        """Write `checkpoints/step_N/` atomically (temp dir + rename) and drop older ones."""
        root = self.out / "checkpoints"
        final = root / f"step_{self.step:06d}"
        tmp = root / f".tmp_step_{self.step:06d}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        torch.save(self.state_dict(), tmp / "state.pt")
        (tmp / "config.yaml").write_text(to_yaml(self.cfg))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in root.glob("step_*"):
            if old != final:
                shutil.rmtree(old, ignore_errors=True)
        return final


def check_finite(loss: torch.Tensor, eps_hat: torch.Tensor, step: int) -> None:
    """Stop before the update, so the last checkpoint stays clean. sds() zeroes stray non-finite gradient
    elements, but a prior whose prediction is non-finite would otherwise train on the regularisers alone and
    report a quiet, meaningless run."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"loss became {loss.item()} at step {step}")
    bad = (~torch.isfinite(eps_hat)).float().mean()
    if bad > 0:
        raise FloatingPointError(f"prior prediction became non-finite ({float(bad):.0%} of ε̂) at step {step}")


def eval_lights(cams: Cameras) -> torch.Tensor:
    """[B, 3] fixed point lights behind and above each eval camera, so eval renders are deterministic."""
    return cams.position * 1.5 + torch.tensor([0.0, 0.0, 1.0], device=cams.c2w.device)


def _masked_mean(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean colour [3] of the pixels where mask [B, 1, H, W] is set; white when the mask is empty."""
    m = mask.float()
    total = m.sum()
    if total == 0:
        return torch.ones(3, device=rgb.device)
    return (rgb * m).sum(dim=(0, 2, 3)) / total


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"))
    return found[-1] if found else None


def run_trial(cfg: TrialConfig, out: Path, callback: TrialCallback | None = None, prior: Prior | None = None,
              scorer: Scorer | None = None, resume_from: Path | None = None) -> TrialResult:
    """Run (or continue, from `resume_from`) one trial, writing renders, checkpoints and final artifacts to `out`."""
    callback = callback or TrialCallback()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    prior = prior or load_prior(cfg.prior, cfg.device)
    scorer = scorer or load_scorer(cfg.scoring.model, resolve_device(cfg.device), prior)
    check_prompt(cfg, prior)
    trial = Trial(cfg, prior, scorer, out)
    if resume_from is not None:
        trial.load_state_dict(torch.load(Path(resume_from) / "state.pt", weights_only=False))
    (out / "config.yaml").write_text(to_yaml(cfg))
    callback.on_start(cfg, trial.step, {"prior": prior.describe(), "scorer": scorer.name})
    history: list[dict[str, float]] = []
    metrics: dict[str, float] = {}
    render_path = out / "renders" / "none.png"
    while trial.step < cfg.steps:
        step_metrics = trial.train_step()
        history.append({"step": trial.step, **step_metrics})
        callback.on_step(trial.step, step_metrics)
        if trial.step % cfg.eval.every == 0 or trial.step == cfg.steps:
            metrics, renders = trial.evaluate()
            render_path = images.save_grid(renders, out / "renders" / f"step_{trial.step:06d}.png", cfg.eval.views)
            ckpt = trial.save_checkpoint() if trial.step % cfg.checkpoint_every == 0 or trial.step == cfg.steps else None
            callback.on_eval(trial.step, metrics, render_path, ckpt)
    if not metrics:  # resumed at the last step: nothing trained, evaluate once for the final numbers
        metrics, renders = trial.evaluate()
        render_path = images.save_grid(renders, out / "renders" / f"step_{trial.step:06d}.png", cfg.eval.views)
    metrics = {**metrics, **trial.ground_truth_retrieval()}
    artifacts = write_final(trial, metrics, render_path)
    result = TrialResult(metrics, artifacts, trial.step, time.perf_counter() - started, history)
    callback.on_end(result)
    return result


def write_final(trial: Trial, metrics: dict[str, float], render_path: Path) -> dict[str, Path]:
    """`final/views.png` (colour and geometry rows), `final/turntable.gif`, `final/metrics.json`."""
    final = trial.out / "final"
    final.mkdir(exist_ok=True)
    views = final / "views.png"
    shutil.copyfile(render_path, views)
    frames = trial.render_views(trial.eval_cameras(trial.cfg.eval.turntable_frames), "lambertian").rgb
    gif = images.save_gif(frames, final / "turntable.gif")
    (final / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return {"views": views, "turntable": gif, "metrics": final / "metrics.json", "config": trial.out / "config.yaml"}


def check_prompt(cfg: TrialConfig, prior: Prior) -> None:
    """Closed-vocabulary priors (analytic, toy world) fail fast on a prompt they cannot condition on."""
    prior.text_embedding(cfg.prompt)
