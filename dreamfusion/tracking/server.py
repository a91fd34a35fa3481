"""The MLflow UI of a local SQLite store: a lean `mlflow server` started, announced, and stopped by its PID."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from urllib.parse import urlparse

from dreamfusion.errors import ConfigError
from dreamfusion.tracking.store import ARTIFACTS_DIR, check_store, experiment_links, sqlite_path

STOP_TIMEOUT_S = 10
STDERR_FD = 2  # the server logs here, the real stderr even where sys.stderr is replaced


def server_command(uri: str, host: str, port: int) -> list[str]:
    """`mlflow server` for a local SQLite store, lean (one worker) and serving the artifacts beside it."""
    db = sqlite_path(uri)
    if db is None:
        raise ConfigError(f"--tracking-uri: df-sweep ui serves a local SQLite store; {_not_served(uri)}")
    if not db.is_file():
        raise ConfigError(f"{db}: no MLflow store here yet; df-sweep launch or df-sweep run creates it")
    check_store(uri)  # a whole SQLite database: a text file would fail inside the server, after it is announced
    with socket.socket() as probe:
        if probe.connect_ex((host, port)) == 0:
            raise ConfigError(f"--port: {host}:{port} is in use; pass another --port")
    return [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(db.parent / ARTIFACTS_DIR),
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def free_port(host: str) -> int:
    """A port free on `host` now, chosen by the OS, for a server started right after."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _not_served(uri: str) -> str:
    """Why a URI other than sqlite:/// is refused, in the words of what it is."""
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        return f"{uri} is a server already, open it in a browser"
    if scheme in ("", "file"):
        return (
            f"{uri} is a file store, which MLflow keeps in maintenance mode and df-sweep ui does not serve; "
            f"pass a sqlite:///PATH store"
        )
    return f"{uri} is a {scheme} database; serve it with mlflow server --backend-store-uri {uri}"


def serve_ui(
    uri: str, host: str, port: int, echo: Callable[[str], None], warn: Callable[[str], None] | None = None
) -> int:
    """Run the UI in the foreground until Ctrl-C or SIGTERM, then stop the server and its workers; returns the
    server's exit code when it stops by itself (0 when stopped by a signal)."""
    if not is_loopback(host):
        (warn or echo)(
            f"warning: --host {host}: the MLflow UI is served to every machine that reaches this one, with no "
            f"authentication: anyone can read, change and delete runs. Keep 127.0.0.1 and use an SSH tunnel, or "
            f"put auth in front (docs/guide/security.md: Sharing the MLflow UI)"
        )
    port = port or free_port(host)  # announced as bound: `--port 0` asks for any free port, not port 0
    command = server_command(uri, host, port)
    base = f"http://{host}:{port}"
    # Explicit handlers: a shell that starts df-sweep in the background ignores SIGINT, and `kill` sends SIGTERM.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    # The server's own log goes to stderr: stdout carries the address and the links alone, in that order.
    child = subprocess.Popen(
        command,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        start_new_session=True,
        stdout=STDERR_FD,
    )
    try:
        echo(f"MLflow UI for {uri} at {base} (pid {child.pid}); Ctrl-C stops it")
        for experiment, link in experiment_links(uri, base):
            echo(f"  {experiment}: {link}")
        return child.wait()
    except KeyboardInterrupt:
        os.killpg(child.pid, signal.SIGTERM)  # the server's own workers are in the child's process group
        try:
            child.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
        return 0


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only: a loopback address, or `localhost`."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
