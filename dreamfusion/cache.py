"""Where df-sweep keeps what it can rebuild but would rather not: rendered image banks, compiled kernels."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """`DF_SWEEP_CACHE`, else ~/.cache/df-sweep: per user, shared by every trial worker on the machine."""
    return Path(os.environ.get("DF_SWEEP_CACHE", Path.home() / ".cache" / "df-sweep"))
