"""The media each trial left in MLflow, fetched once into the report's folder: its turntable (`final/turntable.*`:
a GIF today, any other format a trial logs under that name too), for the render grid and the HTML gallery."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath

import pandas as pd

from analysis.load import Sweep
from analysis.store import quiet_artifacts
from dreamfusion.tracking.schema import FINAL_DIR, TURNTABLE_ARTIFACT

TURNTABLE_STEM = PurePosixPath(TURNTABLE_ARTIFACT).stem
MEDIA_DIR = "turntables"


def fetch_turntables(sweep: Sweep, out: Path) -> pd.DataFrame:
    """run_id → local path (relative to `out`) of every turntable a finished trial logged: `MEDIA_DIR/<run id>.<ext>`
    (a run id is safe as a file name; a run name holds the prompt)."""
    from mlflow import MlflowClient

    client = MlflowClient(sweep.tracking_uri)
    folder = out / MEDIA_DIR
    rows = []
    with quiet_artifacts(), tempfile.TemporaryDirectory() as scratch:
        for run_id in sweep.finished["run_id"]:
            for info in client.list_artifacts(run_id, FINAL_DIR):
                name = PurePosixPath(info.path)
                if info.is_dir or name.stem != TURNTABLE_STEM:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                target = folder / f"{run_id}{name.suffix.lower()}"
                shutil.move(client.download_artifacts(run_id, info.path, scratch), target)
                rows.append({"run_id": run_id, "path": target.relative_to(out).as_posix(), "format": name.suffix[1:]})
    return pd.DataFrame(rows, columns=["run_id", "path", "format"])
