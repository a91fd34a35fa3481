"""The Ray a sweep runs on: checks before anything starts, an embedded Ray on this machine (`embedded.py`) or a
connection to a cluster (shipping this code to its workers), and checks of the live nodes once connected."""

from __future__ import annotations

import json
import logging
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dreamfusion.console.progress import TRIAL_LINE_REGEX
from dreamfusion.errors import ConfigError, first_line
from dreamfusion.sweep.spec import Resources, SweepSpec
from dreamfusion.tracking.store import check_reachable
from dreamfusion.tune.embedded import embedded_ray, local_node
from dreamfusion.tune.storage import is_uri

# Ray folds lines of different workers that differ only in numbers into one ("[repeated 2x across cluster]"); every
# trial's eval lines must come through. Ray reads this when it is imported, so it is set before that.
os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", TRIAL_LINE_REGEX)

ADDRESS_TIMEOUT_S = 3.0
#: The oldest Ray with what df-sweep uses: token authentication, which the embedded Ray turns on, came in Ray 2.52
#: (pyproject.toml requires the same).
MIN_RAY = "2.52"


def preflight(spec: SweepSpec, uri: str, address: str | None) -> None:
    """Environment checks that need no cluster: a Ray new enough, the tracking store answers, and (for an embedded
    Ray) this machine can hold a trial. A cluster's nodes are checked once connected, in `ray_session`."""
    check_ray_version()
    check_reachable(uri)
    if address is None and not _ray_initialized():
        check_resources(spec.resources, [local_node()])


def check_ray_version() -> None:
    """An older Ray would fail later and in its own words (an unknown auth mode, a name it lacks)."""
    import ray
    from packaging.version import Version

    if Version(ray.__version__) < Version(MIN_RAY):
        raise ConfigError(
            f"ray {ray.__version__} is installed; df-sweep needs ray {MIN_RAY} or newer (token authentication): "
            f"pip install 'ray[tune]>={MIN_RAY}'"
        )


def local_slots(resources: Resources) -> int:
    """Trials an embedded Ray on this machine runs at once."""
    node = local_node()
    return max(1, int(min(node["CPU"] / resources.cpu, node["GPU"] / resources.gpu if resources.gpu else math.inf)))


def check_resources(resources: Resources, nodes: list[dict[str, float]]) -> None:
    """Fail fast when no node can ever hold one trial: Tune would otherwise leave it pending forever."""
    need = resources.ray_resources()
    if any(all(node.get(k, 0.0) >= v for k, v in need.items()) for node in nodes):
        return
    largest = max(nodes, key=lambda n: (n.get("CPU", 0.0), n.get("GPU", 0.0)), default={})
    have = ", ".join(f"{k}={largest.get(k, 0.0):g}" for k in need)
    raise ConfigError(
        f"resources: no node can ever run a trial needing "
        f"{', '.join(f'{k}={v:g}' for k, v in need.items())}; the largest node has {have}"
    )


def _ray_initialized() -> bool:
    import ray

    return ray.is_initialized()


@contextmanager
def ray_session(
    address: str | None, root: str, resources: Resources, runtime_env: dict[str, Any] | None = None
) -> Iterator[None]:
    """Use the Ray already initialised in this process, connect to `address`, or start an embedded one; checks
    the live nodes before anything runs, and shuts down only what it began."""
    import ray

    if ray.is_initialized():
        check_cluster(resources, root)
        yield
        return
    if address is None:
        with embedded_ray(root, runtime_env):
            check_cluster(resources, root)
            yield
        return
    connect_ray(address, runtime_env)
    try:
        check_cluster(resources, root)
        yield
    finally:
        ray.shutdown()


def connect_ray(address: str, runtime_env: dict[str, Any] | None = None) -> None:
    """An existing cluster (`auto`, `HOST:PORT`, `ray://HOST:PORT`); no cluster there is a user mistake. Workers'
    output is forwarded to the driver, so each trial's eval lines are in the driver's log (`ray job logs`)."""
    import ray

    _check_listening(address)
    try:
        ray.init(
            address=address,
            logging_level=logging.ERROR,
            log_to_driver=True,
            runtime_env=with_project_code(runtime_env),
        )
    except (ConnectionError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({first_line(exc)})") from None


def with_project_code(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """The job's runtime env plus this `dreamfusion` package as a `py_modules` zip, so that a cluster's workers
    run the driver's code whatever their image holds: a node the autoscaler adds later cannot be asked
    beforehand, and Ray uploads the zip once per code version (cached by its hash). A job that ships code
    itself (`ray job submit --working-dir .`) is left as it is: Ray refuses to merge a second copy."""
    import dreamfusion

    env = dict(runtime_env or {})
    submitted = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("runtime_env") or {}
    if any(key in source for key in ("working_dir", "py_modules") for source in (env, submitted)):
        return env
    return {
        **env,
        "py_modules": [str(Path(dreamfusion.__file__).parent)],
        "excludes": [*env.get("excludes", []), "__pycache__"],
    }


def check_cluster(resources: Resources, root: str) -> None:
    """What the live nodes must offer before anything runs: room for one trial, and storage they all share."""
    nodes = _alive_nodes()
    check_resources(resources, nodes)
    check_shared_storage(root, len(nodes))


def check_shared_storage(root: str, nodes: int) -> None:
    """Ray stopped syncing trial directories to the head in 2.7: on a cluster, checkpoints written to a node's
    own disk are lost to a trial retried on another node and to `df-sweep resume`."""
    if nodes > 1 and not is_uri(root):
        raise ConfigError(
            f"--storage {root}: a local path on a {nodes}-node Ray cluster; pass storage every node "
            f"reaches: s3://BUCKET/PATH, gs://BUCKET/PATH, or file://{root} if every node mounts it"
        )


def _check_listening(address: str) -> None:
    """A quick TCP look at HOST:PORT: Ray itself retries an address nothing listens on for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # `auto`: Ray looks the address up on this machine and fails fast itself
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as exc:
        raise ConfigError(f"--address {address}: nothing answers there ({exc.strerror or exc})") from None


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]
