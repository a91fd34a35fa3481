"""The toy-world training run: resumable, and honest about the time it took (its budget is wall-clock)."""

from __future__ import annotations

import json

from dreamfusion.toyworld.train import TrainConfig, train_all


def test_a_run_resumed_after_a_kill_counts_the_unet_time_before_the_kill(tmp_path):
    tiny = {"colour_views": 1, "spot_views": 1, "shape_views": 1, "clip_steps": 2, "minutes": 30.0}
    train_all(TrainConfig(**tiny, unet_max_steps=2), tmp_path, log=lambda _: None)
    state_path = tmp_path / "run_state.json"
    first = json.loads(state_path.read_text())
    # what a kill during the UNet leaves: the run state as saved before the UNet began, the UNet's in its checkpoint
    killed = {k: first[k] for k in ("data_seconds", "clip_seconds", "before_unet")}
    state_path.write_text(json.dumps({**killed, "seconds": first["before_unet"]}))

    weights = train_all(TrainConfig(**tiny, unet_max_steps=4), tmp_path, resume=True, log=lambda _: None)

    resumed = json.loads(state_path.read_text())
    assert resumed["unet_steps"] == 4 and resumed["unet_seconds"] > first["unet_seconds"]
    assert resumed["seconds"] >= resumed["before_unet"] + resumed["unet_seconds"]
    assert json.loads((weights / "training.json").read_text())["run"]["seconds"] == resumed["seconds"]
    assert (weights / "unet" / "diffusion_pytorch_model.safetensors").exists()
