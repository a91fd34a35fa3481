"""A trained field as one self-contained file: the field, background and occupancy weights with the trial config
that made them, and no optimiser or RNG state (what a re-render, a mesh or a second-stage trial needs, and a tenth
of a checkpoint's size). Loaded with `torch.load(weights_only=True)`: a file from elsewhere runs no code.

`find_weights` also reads a trial directory or one of its checkpoints, so every local trial is a source."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion.config.files import load_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.nerf.field import Background, NeRFField
from dreamfusion.nerf.occupancy import OccupancyGrid

#: The file a trial writes at its end, under `final/`.
WEIGHTS_FILE = "field.pt"
FORMAT = "df-sweep field weights"
FORMAT_VERSION = 1


@dataclass
class FieldWeights:
    config: TrialConfig  # the trial that trained them: its nerf size, background mode, cameras and renderer
    field: dict[str, Tensor]
    background: dict[str, Tensor]
    occupancy: dict[str, Tensor]
    step: int

    def save(self, path: Path) -> Path:
        """Written to a temporary name and renamed: a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "config": self.config.model_dump(mode="json"),
                "field": self.field,
                "background": self.background,
                "occupancy": self.occupancy,
                "step": self.step,
            },
            tmp,
        )
        tmp.replace(path)
        return path

    def build(self, device: torch.device | str = "cpu") -> tuple[NeRFField, Background, OccupancyGrid]:
        """The field, background and occupancy grid, loaded and in eval mode on `device`."""
        field = NeRFField(self.config.nerf)
        field.load_state_dict(self.field)
        background = Background(self.config.render.background)
        background.load_state_dict(self.background)
        occupancy = OccupancyGrid()
        occupancy.load_state_dict(self.occupancy)
        return field.to(device).eval(), background.to(device).eval(), occupancy.to(device)


def load_weights(path: Path) -> FieldWeights:
    """A weights file, or a trial checkpoint's `state.pt` (its config read from the `config.yaml` beside it)."""
    data = _read(path)
    if data.get("format") == FORMAT:
        config = TrialConfig.model_validate(data["config"])
    elif {"field", "background", "occupancy", "step"} <= data.keys():
        config = load_trial_config(path.parent / "config.yaml")
    else:
        raise ConfigError(f"{path}: not a df-sweep field weights file or trial checkpoint")
    return FieldWeights(config, data["field"], data["background"], data["occupancy"], int(data["step"]))


def _read(path: Path) -> dict[str, Any]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated, foreign or unsafe pickle: say which file and why, not a traceback
        raise ConfigError(f"{path}: cannot read field weights ({_cause(path, exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a df-sweep field weights file or trial checkpoint")
    return data


def _cause(path: Path, exc: Exception) -> str:
    """Why torch.load failed, in words: its own message can be a bare byte value (`KeyError: 101`)."""
    error = f"{type(exc).__name__}: {first_line(exc)}"
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        return f"not a file torch.save wrote: no zip archive; {error}"
    return error


def find_weights(location: Path) -> Path:
    """The weights a local path stands for: a weights file or checkpoint `state.pt` itself; a directory holding
    one; a trial directory (its `final/field.pt`, else its latest checkpoint)."""
    location = Path(location)
    if location.is_file():
        return location
    candidates = [location / WEIGHTS_FILE, location / "state.pt", location / "final" / WEIGHTS_FILE]
    checkpoints = sorted((location / "checkpoints").glob("step_*/state.pt")) if location.is_dir() else []
    found = next((p for p in [*candidates, *checkpoints[-1:]] if p.is_file()), None)
    if found is None:
        raise ConfigError(
            f"{location}: no field weights here (expected a trial directory with final/{WEIGHTS_FILE} or "
            f"checkpoints/, a checkpoint directory, or a weights file)"
        )
    return found
