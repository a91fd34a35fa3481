"""What a trial is at a step: the field, its background and occupancy grid, the optimiser, the step, the RNG and
what the loss has learnt (VSD's adapter); saved and restored as one checkpoint, so a resumed trial continues exactly
where it stopped."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from dreamfusion.config.files import to_yaml
from dreamfusion.config.schema import TrialConfig
from dreamfusion.export.weights import FieldWeights
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.nerf.field import Background, NeRFField, finest_voxel
from dreamfusion.nerf.grow import grow_field
from dreamfusion.nerf.occupancy import OccupancyGrid
from dreamfusion.nerf.render import GradientFn, Lighting, RenderOutput, render, render_shadings
from dreamfusion.sds.loss import Loss


class TrialState:
    def __init__(self, cfg: TrialConfig, device: torch.device, loss: Loss | None = None) -> None:
        """`loss`: the step's, whose learnt state (if any) is the trial's too; None where only the field matters."""
        self.cfg = cfg
        self.loss = loss
        torch.manual_seed(cfg.seed)  # the field's initialisation; everything after draws from `generator`
        self.field = NeRFField(cfg.nerf, fused_grid=cfg.speed.fused_grid).to(device)
        self.background = Background(cfg.render.background).to(device)
        self.occupancy = OccupancyGrid().to(device)
        self.optim = torch.optim.Adam(self._param_groups())
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.nonfinite_streak = 0  # steps in a row whose ε̂ was too often non-finite (see trial.step)

    def _param_groups(self) -> list[dict[str, Any]]:
        o = self.cfg.optim
        adam = {"betas": tuple(o.betas), "eps": o.eps}
        groups = [
            {"params": list(self.field.encoding.parameters()), "lr": o.lr_grid, "name": "grid", **adam},
            {"params": list(self.field.decoder.parameters()), "lr": o.lr_mlp, "name": "mlp", **adam},
            {"params": list(self.background.parameters()), "lr": o.lr_background, "name": "background", **adam},
        ]
        return [g for g in groups if g["params"]]

    def follow_optim_config(self) -> None:
        """The optimiser's learning rates, betas and eps set to the config's (Adam copies them when it is built): after
        a checkpoint is loaded, and at every step where `optim` keys ramp."""
        for group, configured in zip(self.optim.param_groups, self._param_groups()):
            group.update({k: v for k, v in configured.items() if k != "params"})

    def render(
        self,
        cams: Cameras,
        lighting: Lighting,
        generator: torch.Generator | None,
        bg: torch.Tensor | None,
        need_normals: bool,
    ) -> RenderOutput:
        """The field seen from `cams` at the config's resolution and samples, skipping empty space."""
        r = self.cfg.render
        return render(
            self.field,
            self.background,
            cams,
            r.resolution,
            r.samples_per_ray,
            lighting,
            generator,
            bg,
            normal_step=finest_voxel(self.cfg.nerf) / 2,
            need_normals=need_normals,
            occupancy=self.occupancy,
            gradient=self._gradient(),
        )

    def render_shadings(self, cams: Cameras, lights: list[Lighting], bg: torch.Tensor | None) -> list[RenderOutput]:
        """The same views in several shadings from one pass through the field, without jitter: each is exactly
        `render(cams, light, None, bg, need_normals=True)`."""
        r = self.cfg.render
        return render_shadings(
            self.field,
            self.background,
            cams,
            r.resolution,
            r.samples_per_ray,
            lights,
            bg,
            normal_step=finest_voxel(self.cfg.nerf) / 2,
            occupancy=self.occupancy,
            gradient=self._gradient(),
        )

    def _gradient(self) -> GradientFn | None:
        """The field's exact gradient for the normals, where `speed.analytic_normals` asks and the field has one."""
        return self.field.with_gradient if self.cfg.speed.analytic_normals and self.field.has_gradient else None

    def weights(self) -> FieldWeights:
        """The field, background and occupancy grid alone: what the trial leaves to re-render or start from."""
        return FieldWeights(
            self.cfg,
            self.field.state_dict(),
            self.background.state_dict(),
            self.occupancy.state_dict(),
            self.step,
        )

    def start_from(self, source: FieldWeights) -> None:
        """Take another trial's field (`init_from`), grown to this trial's size when larger; the optimiser, step
        and RNG stay this trial's own, fresh. A background of the same kind is taken too; the occupancy grid is
        taken because it describes the field (the first step refreshes it anyway)."""
        field, background, occupancy = source.build(self.occupancy.occupied.device)
        grow_field(field, self.field)
        if source.config.render.background == self.cfg.render.background:
            self.background.load_state_dict(background.state_dict())
        self.occupancy.load_state_dict(occupancy.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {
            "field": self.field.state_dict(),
            "background": self.background.state_dict(),
            "occupancy": self.occupancy.state_dict(),
            "optim": self.optim.state_dict(),
            "step": self.step,
            "generator": self.generator.get_state(),
            "nonfinite_streak": self.nonfinite_streak,
            "loss": self.loss.state_dict() if self.loss is not None else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.field.load_state_dict(state["field"])
        self.background.load_state_dict(state["background"])
        self.occupancy.load_state_dict(state["occupancy"])
        self.optim.load_state_dict(state["optim"])
        # The config's learning rates, betas and eps win over the checkpoint's: the same on a retry or a resume,
        # new ones when a PBT trial continues another trial's checkpoint with a perturbed config.
        self.follow_optim_config()
        self.step = int(state["step"])
        self.generator.set_state(state["generator"])
        self.nonfinite_streak = int(state.get("nonfinite_streak", 0))
        if self.loss is not None and state.get("loss"):
            self.loss.load_state_dict(state["loss"])


def save_checkpoint(state: TrialState, out: Path) -> Path:
    """Write `checkpoints/step_N/` atomically (temp dir + rename) and drop older ones."""
    root = out / "checkpoints"
    final = root / f"step_{state.step:06d}"
    tmp = root / f".tmp_step_{state.step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(state.state_dict(), tmp / "state.pt")
    (tmp / "config.yaml").write_text(to_yaml(state.cfg))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in root.glob("step_*"):
        if old != final:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(state: TrialState, checkpoint: Path) -> None:
    state.load_state_dict(torch.load(Path(checkpoint) / "state.pt", weights_only=False))


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"))
    return found[-1] if found else None
