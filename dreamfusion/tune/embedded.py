"""The embedded Ray: a single-node Ray started by the driver on this machine, reachable from this machine only,
by this user only, and stopped with the driver however the driver stops.

- Loopback: on Linux `ray.init` turns a node IP of 127.0.0.1 back into the machine's network address, and its
  servers then listen on every interface. With Ray's "no cluster" switch (what it uses on macOS and Windows)
  the node is 127.0.0.1 and every server binds there.
- Token auth: whatever RAY_AUTH_MODE says, the embedded Ray runs with `RAY_AUTH_MODE=token` and a fresh random
  token in a 0600 file of its own, so another user of the machine cannot drive it either.
- A reaper (`reaper.py`) stops its processes when the driver exits without `ray.shutdown()` (a SIGKILL).
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dreamfusion.tune import ray_private, reaper
from dreamfusion.tune.storage import is_uri

#: Ray's session dir adds ~64 characters of socket path (`session_<date>_<pid>/sockets/plasma_store`) to its
#: temp dir, and a unix socket path must fit in 107 bytes.
MAX_RAY_TEMP_DIR = 40
#: What decides Ray's auth: the mode, and the token (RAY_AUTH_TOKEN, the highest precedence, is cleared).
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
#: Ray's "no cluster" switch, read by the processes Ray starts; the driver's copy is switched by `ray_private`.
NO_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
#: How long a stopping driver waits for its reaper to find nothing left (Ray stopped itself).
REAPER_WAIT_S = 10.0


def local_node() -> dict[str, float]:
    """What an embedded Ray on this machine offers."""
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def ray_temp_dir(root: str | Path) -> Path:
    """Ray's temp files under a local results root, unless that path would push its sockets past 107 bytes."""
    preferred = Path(root) / ".ray"
    if not is_uri(root) and len(str(preferred)) <= MAX_RAY_TEMP_DIR:
        return preferred
    return Path("/tmp") / f"dfs-{hashlib.sha1(str(root).encode()).hexdigest()[:10]}"


@contextmanager
def embedded_ray(root: str | Path, runtime_env: dict[str, Any] | None = None) -> Iterator[None]:
    """The embedded Ray for as long as the context lasts; this process's environment is restored afterwards."""
    import ray

    temp = ray_temp_dir(root)
    temp.mkdir(parents=True, exist_ok=True)
    token = write_token(temp / f"auth_token_{os.getpid()}")
    marker = secrets.token_hex(8)
    saved = {key: os.environ.get(key) for key in (*AUTH_ENV, NO_CLUSTER_ENV, reaper.MARKER_VAR)}
    _set_env({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), NO_CLUSTER_ENV: "0"})
    os.environ[reaper.MARKER_VAR] = marker
    stop_reaper = start_reaper(marker, token)
    try:
        with ray_private.no_cluster_mode():  # the node is 127.0.0.1 and every server binds there
            _init(temp, runtime_env)
        yield
    finally:
        ray.shutdown()
        _set_env(saved)
        stop_reaper()


def write_token(path: Path) -> Path:
    """A fresh random token in a file only this user may read or write (0600, whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file of that name may have had wider permissions
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(32))
    return path


def _set_env(values: dict[str, str | None]) -> None:
    """Set (None: unset) environment variables, then have Ray re-read its auth settings, which it caches."""
    for key, value in {**dict.fromkeys(AUTH_ENV), **values}.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    ray_private.reload_auth()


def _init(temp_dir: Path, runtime_env: dict[str, Any] | None) -> None:
    """`ray.init` of the embedded Ray: no dashboard, no usage stats, temp files in `temp_dir`. Workers' output
    reaches the driver (each trial prints a line per evaluation), as on a cluster."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    node = local_node()
    ray.init(
        num_cpus=int(node["CPU"]),
        num_gpus=int(node["GPU"]),
        include_dashboard=False,
        _temp_dir=str(temp_dir),
        configure_logging=True,
        logging_level=logging.ERROR,
        log_to_driver=True,
        runtime_env=runtime_env,
    )


def start_reaper(marker: str, token: Path) -> Callable[[], None]:
    """Start `reaper.py` beside this driver; returns how to stop it (closing the pipe it waits on, which the
    driver's exit closes too, however it exits)."""
    read_end, write_end = os.pipe()  # not inherited: only this process holds the write end
    process = subprocess.Popen(
        [sys.executable, "-m", "dreamfusion.tune.reaper", str(read_end), marker, str(token)],
        pass_fds=(read_end,),
        start_new_session=True,  # out of the terminal's process group: a Ctrl-C is for the driver
        stdin=subprocess.DEVNULL,
    )
    os.close(read_end)

    def stop() -> None:
        os.close(write_end)
        try:
            process.wait(timeout=REAPER_WAIT_S)
        except subprocess.TimeoutExpired:  # still stopping stragglers: it finishes on its own
            pass

    return stop
