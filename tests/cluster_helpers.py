"""Real processes for the multi-node tests, on one machine: a Ray head and a second Ray node (`ray start`), an
MLflow server on PostgreSQL (SQLite where PostgreSQL is not installed), and `df-sweep` drivers.

Every process starts in a session of its own and is stopped by killing every process of that session (found by
PID in /proc), never with `ray stop`, which would stop any other Ray on the machine too. Everything binds
127.0.0.1. Ray's auth token is turned off on both sides (`ray start --head` would otherwise require one).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep_helpers import tests_on_path, worker_runtime_env

#: What every process of the cluster tests runs with: no auth token, no telemetry, no hub.
QUIET = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "HF_HUB_OFFLINE": "1",
    "PYTHONUNBUFFERED": "1",
}
#: The head declares a lost node dead after 3 missed 1 s health checks, not Ray's default 5 x 3 s.
FAST_NODE_DEATH = {"RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def short_dir(prefix: str, parent: str | Path = "/tmp") -> Path:
    """A fresh directory with a short path, that other users may enter: a Ray node's unix sockets must fit in
    107 bytes, and the postgres user must reach its data directory (pytest's tmp folders are private)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    path.chmod(0o711)
    return path


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 0.5) -> Any:
    """Poll `check` until it returns something truthy; its last value, or a TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f}s for {what}")
        time.sleep(every_s)


# ---------------------------------------------------------------------------------------------------------------
# Processes, each in its own session


def session_pids(sid: int) -> list[int]:
    """Live processes of session `sid` (zombies are already dead: they only wait to be reaped)."""
    found = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:  # it exited while we looked
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(stat.split("/")[2]))
    return found


def signal_session(sid: int, signum: int) -> None:
    for pid in session_pids(sid):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


@dataclass
class Service:
    """A process started in a new session; `stop` ends that session's every process, whatever their group."""

    name: str
    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(
        cls, name: str, command: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> Service:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **QUIET, **(env or {})},
                cwd=cwd,
                start_new_session=True,
            )
        return cls(name, proc, log)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return bool(session_pids(self.pid))

    def kill(self) -> None:
        """SIGKILL the whole session, again until none is left (one may fork while we look): a crash."""

        def gone() -> bool:
            signal_session(self.pid, signal.SIGKILL)
            return not self.alive()

        wait_until(f"{self.name} to die", gone, 30, 0.1)
        self.proc.wait()

    def stop(self, grace_s: float = 10) -> None:
        """SIGTERM every process of the session, SIGKILL whatever outlives `grace_s`; raise if any survives."""
        signal_session(self.pid, signal.SIGTERM)
        try:
            wait_until(f"{self.name} to stop", lambda: not self.alive(), grace_s, 0.2)
        except TimeoutError:
            self.kill()
        self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def wait_for_http(url: str, service: Service, timeout_s: float = 120) -> None:
    def answers() -> bool:
        if service.proc.poll() is not None:
            raise RuntimeError(f"{service.name} exited with {service.proc.returncode}:\n{service.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            return False

    wait_until(f"{service.name} at {url}", answers, timeout_s)


# ---------------------------------------------------------------------------------------------------------------
# Ray


@dataclass
class RayCluster:
    """A head and a second node (advertising the custom resource `node2`), one CPU each, both on 127.0.0.1."""

    root: Path
    short: Path  # under /tmp, for the nodes' temp dirs
    port: int = field(default_factory=free_port)
    head: Service | None = None
    node2: Service | None = None
    node2_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        head_dir = short_dir("h", self.short)
        self.head = Service.start(
            "ray head",
            [
                str(BIN / "ray"),
                "start",
                "--head",
                f"--port={self.port}",
                "--include-dashboard=false",
                *self._node_flags(head_dir),
            ],
            self.root / "ray-head.log",
            FAST_NODE_DEATH,
        )
        self.wait_nodes(1)
        self.start_node2()

    def start_node2(self) -> None:
        self.node2_dir = short_dir("n", self.short)
        self.node2 = Service.start(
            "ray node2",
            [
                str(BIN / "ray"),
                "start",
                f"--address={self.address}",
                "--resources",
                json.dumps({"node2": 1}),
                *self._node_flags(self.node2_dir),
            ],
            self.root / "ray-node2.log",
        )
        self.wait_nodes(2)

    def ensure_node2(self) -> None:
        """Bring the second node back if an earlier test removed it."""
        if not self.node2.alive():
            self.start_node2()

    def _node_flags(self, temp_dir: Path) -> list[str]:
        """One CPU, no GPU, everything on 127.0.0.1 and in `temp_dir`, in the foreground (so that its session
        holds every process it starts); each node's dashboard agent on a port of its own."""
        return [
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            "--num-gpus=0",
            "--disable-usage-stats",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--temp-dir={temp_dir}",
            "--block",
        ]

    def nodes(self) -> dict[str, str]:
        """node id (hex) → its temp dir, of the nodes the head sees alive."""
        from ray._raylet import GcsClient
        from ray.core.generated.gcs_pb2 import GcsNodeInfo

        alive = GcsClient(address=self.address).get_all_node_info(
            timeout=10, state_filter=GcsNodeInfo.GcsNodeState.ALIVE
        )
        return {info.node_id.hex(): info.temp_dir for info in alive.values()}

    def node2_id(self) -> str:
        return next(node for node, temp in self.nodes().items() if Path(temp) == self.node2_dir)

    def wait_nodes(self, n: int, timeout_s: float = 90) -> None:
        def ready() -> bool:
            for service in (self.head, self.node2):
                if service is not None and service.proc.poll() is not None:
                    raise RuntimeError(f"{service.name} exited:\n{service.tail()}")
            try:
                return len(self.nodes()) == n
            except Exception:  # the head's GCS is not up yet
                return False

        wait_until(f"{n} alive Ray nodes", ready, timeout_s)

    def stop(self) -> None:
        """SIGKILL: a Ray node takes over 10 s to stop on SIGTERM, and nothing in a test cluster needs saving."""
        for service in (self.node2, self.head):
            if service is not None:
                service.kill()
        for service in (self.node2, self.head):
            assert service is None or not service.alive(), f"{service.name} survived"


# ---------------------------------------------------------------------------------------------------------------
# PostgreSQL and the MLflow server


def postgres_bin() -> Path | None:
    """Debian keeps the server binaries out of PATH, in /usr/lib/postgresql/<version>/bin."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = Path(found[-1]) if found else (Path(shutil.which("initdb")) if shutil.which("initdb") else None)
    return initdb.parent if initdb is not None else None


def _as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def start_postgres(root: Path, short: Path, bin_dir: Path) -> tuple[Service, str]:
    """A throwaway PostgreSQL cluster on a free port of 127.0.0.1 (no unix socket), trusting local logins."""
    data = short_dir("pg", short)
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust", "--no-sync"]),
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = Service.start(
        "postgres",
        _as_postgres(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(port),
                "-h",
                "127.0.0.1",
                "-k",
                "",
                "-c",
                "fsync=off",
            ]
        ),
        root / "postgres.log",
    )
    ready = [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow"]
    wait_until("postgres", lambda: subprocess.run(ready, capture_output=True).returncode == 0, 60)
    # psycopg2 named: SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3
    return server, f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/postgres"


def backend_store(root: Path, short: Path) -> tuple[Service | None, str]:
    """PostgreSQL where it is installed (CI installs it) and psycopg2 is importable; else a SQLite file."""
    bin_dir = postgres_bin()
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        bin_dir = None
    if bin_dir is None:
        return None, f"sqlite:///{root / 'mlflow.db'}"
    return start_postgres(root, short, bin_dir)


def start_mlflow(root: Path, backend_uri: str) -> tuple[Service, str]:
    """`mlflow server` with the lean settings (one worker, no job consumers), proxying artifacts over HTTP."""
    port = free_port()
    server = Service.start(
        "mlflow server",
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            backend_uri,
            "--artifacts-destination",
            str(root / "mlartifacts"),
        ],
        root / "mlflow.log",
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/health", server)
    return server, url


# ---------------------------------------------------------------------------------------------------------------
# df-sweep drivers


def runtime_env_hook(runtime_env: dict[str, Any] | None) -> dict[str, Any]:
    """RAY_RUNTIME_ENV_HOOK of the tests' `df-sweep` drivers: adds the test's worker setup hook and env vars
    (DF_TEST_RUNTIME_ENV, JSON) to the job's runtime env, which df-sweep itself builds."""
    extra = json.loads(os.environ["DF_TEST_RUNTIME_ENV"])
    env = dict(runtime_env or {})
    return {**env, **extra, "env_vars": {**env.get("env_vars", {}), **extra["env_vars"]}}


def df_sweep(args: list[str], cwd: Path, hook: str, worker_env: dict[str, str]) -> Service:
    """`df-sweep ARGS` in a process of its own (a driver a test can SIGKILL), logging to `cwd`; the workers of
    its trials run the worker setup hook `hook` (a dotted name in tests/) with `worker_env`."""
    env = {
        "RAY_RUNTIME_ENV_HOOK": "cluster_helpers.runtime_env_hook",
        "DF_TEST_RUNTIME_ENV": json.dumps(worker_runtime_env(hook, worker_env)),
        "PYTHONPATH": tests_on_path(),
    }
    log = cwd / f"df-sweep-{args[0]}-{time.monotonic_ns()}.log"
    return Service.start(f"df-sweep {args[0]}", [str(BIN / "df-sweep"), *args], log, env, cwd)


def finished(driver: Service, timeout_s: float = 240) -> tuple[int, str]:
    """(exit code, output) of a `df-sweep` driver, stopped by PID if it runs past `timeout_s`."""
    try:
        code = driver.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        driver.stop()
        raise AssertionError(f"{driver.name} ran past {timeout_s:.0f}s:\n{driver.tail()}") from None
    return code, driver.log.read_text(errors="replace")


# ---------------------------------------------------------------------------------------------------------------
# The whole stack


@dataclass
class Stack:
    """A two-node Ray cluster and an MLflow server: what the cluster and fault tests launch sweeps against."""

    root: Path
    ray: RayCluster
    tracking_uri: str
    backend: str  # "postgresql" or "sqlite": the MLflow server's backend store
    drivers: list[Service] = field(default_factory=list)

    @property
    def storage(self) -> str:
        """Tune's storage: every node is on this machine, so a local folder is shared storage, said by file://."""
        return f"file://{self.root / 'results'}"

    def launch(self, spec: Path, markers: Path, **faults: str) -> Service:
        """`df-sweep launch SPEC` against the cluster and the server; `faults` go to `faulty_world` as
        DF_TEST_<NAME> (hold_seeds="0,1"; nan_prompt="a red cube" for the `test-nan-prompt` prior)."""
        args = [
            "launch",
            str(spec),
            "--address",
            self.ray.address,
            "--tracking-uri",
            self.tracking_uri,
            "--storage",
            self.storage,
        ]
        return self.driver(args, markers, **faults)

    def driver(self, args: list[str], markers: Path, **faults: str) -> Service:
        markers.mkdir(parents=True, exist_ok=True)
        env = {
            "DF_SWEEP_CACHE": str(self.root / "cache"),
            "DF_TEST_MARKERS": str(markers),
            **{f"DF_TEST_{k.upper()}": v for k, v in faults.items()},
        }
        self.drivers.append(df_sweep(args, markers, "sweep_helpers.faulty_world", env))
        return self.drivers[-1]

    def stop_drivers(self) -> None:
        """Stop the drivers a failed test left running, so that they hold no node for the next test."""
        for driver in self.drivers:
            driver.stop()
        self.drivers.clear()


@contextmanager
def running_stack(root: Path) -> Iterator[Stack]:
    """Start PostgreSQL (where installed), the MLflow server and the Ray cluster; stop each by PID on the way out,
    whatever happened, and check that nothing survived."""
    with ExitStack() as stack:
        short = short_dir("dfs")
        stack.callback(shutil.rmtree, short, ignore_errors=True)
        db, backend_uri = backend_store(root, short)
        if db is not None:
            stack.callback(db.stop)
        mlflow, url = start_mlflow(root, backend_uri)
        stack.callback(mlflow.stop)
        cluster = RayCluster(root, short)
        stack.callback(cluster.stop)
        cluster.start()
        started = Stack(root, cluster, url, backend_uri.partition(":")[0].partition("+")[0])
        stack.callback(started.stop_drivers)
        yield started
