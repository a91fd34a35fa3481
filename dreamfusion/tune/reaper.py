"""The embedded Ray's reaper: a small process beside a driver that, once the driver is gone however it went (a
SIGKILL included), stops every process that driver's Ray started. Ray's processes learn of a dead driver late or
never: its agents outlive it (seen: over a minute), and a killed driver runs no `ray.shutdown()`.

`python -m dreamfusion.tune.reaper FD MARKER [FILE...]` waits on pipe FD, whose write end only the driver holds:
end-of-file means the driver has exited. The driver's Ray is every process that carries `DF_SWEEP_RAY=MARKER` in
its environment (the driver set it before starting Ray; Ray's servers and workers inherit it), and every process
below one of those. Ray's agents are such children (of the raylet), and their environment cannot be read from
outside: they rename themselves (`ray::DashboardAgent`), which on Linux overwrites the memory the kernel shows as
their environment. Their parent, the raylet, dies with the driver on Linux, so while the driver lives the reaper
looks every `WATCH_S` and remembers the processes below the marked ones. Processes are found through psutil,
which lists them and their environments on Linux, macOS and Windows alike.

Each process of the driver's Ray gets SIGTERM, and SIGKILL if it outlives the grace period; FILEs (the session's
auth token) are removed. It imports nothing heavy, so it starts in milliseconds, and it ignores the terminal's
signals: a Ctrl-C or a hang-up meant for the driver must not take the reaper first.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

MARKER_VAR = "DF_SWEEP_RAY"
GRACE_S = 5.0
POLL_S = 0.1
#: How often the reaper looks at the living driver's processes: an agent started since its last look, whose
#: raylet then dies with the driver, would be missed.
WATCH_S = 0.5
#: A process gone while we looked, a zombie, or one of another user, whose environment we may not read.
UNREADABLE = (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied)


class Session:
    """How the processes of one driver's Ray are recognised: by the marker, or by descent from a marked process
    (now, or when the reaper last looked while the driver lived)."""

    def __init__(self, marker: str, driver_pid: int) -> None:
        self.marker = marker
        self.driver_pid = driver_pid
        self.spared = {os.getpid(), driver_pid}  # a driver that stops normally is still finishing its work
        self.seen: dict[int, psutil.Process] = {}

    def watch(self) -> None:
        """Remember the Ray processes below the living driver, so that they are found once their parent is gone."""
        try:
            below = psutil.Process(self.driver_pid).children(recursive=True)
        except UNREADABLE:  # the driver is gone: the pipe tells the reaper so
            return
        found = self._with_descendants([p for p in below if self._marked(p)])
        self.seen = {p.pid: p for p in [*self.seen.values(), *found] if _running(p)}

    def processes(self) -> list[psutil.Process]:
        """Live processes of the session (zombies excluded), this one and the driver aside."""
        marked = [p for p in psutil.process_iter() if p.pid not in self.spared and self._marked(p)]
        found = {p.pid: p for p in self._with_descendants([*marked, *self.seen.values()]) if _running(p)}
        return [p for pid, p in found.items() if pid not in self.spared]

    def _marked(self, process: psutil.Process) -> bool:
        try:
            return process.environ().get(MARKER_VAR) == self.marker
        except UNREADABLE:
            return False

    def _with_descendants(self, roots: Iterable[psutil.Process]) -> list[psutil.Process]:
        found = {p.pid: p for p in roots}
        for root in list(found.values()):
            try:
                found.update((p.pid, p) for p in root.children(recursive=True))
            except UNREADABLE:
                continue
        return [p for pid, p in found.items() if pid not in self.spared]


def _running(process: psutil.Process) -> bool:
    """Alive and still the process we met (psutil compares its start time: a PID may be reused), not a zombie."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except UNREADABLE:
        return False


def reap(session: Session, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every process of the session, SIGKILL those alive after `grace_s`; returns the PIDs signalled."""
    signalled = _signal_all(session, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session.processes() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    deadline = time.monotonic() + grace_s
    while (leftover := _signal_all(session, signal.SIGKILL)) and time.monotonic() < deadline:
        signalled += leftover  # again: one may have forked while we looked
        time.sleep(POLL_S)
    return signalled


def _signal_all(session: Session, signum: int) -> list[int]:
    processes = session.processes()
    for process in processes:
        try:
            process.send_signal(signum)  # psutil checks first that the PID is still the process we met
        except UNREADABLE:  # already gone
            pass
    return [p.pid for p in processes]


def wait_for_driver(fd: int, session: Session) -> None:
    """Until the driver's end of the pipe is closed (nothing is ever written: a read then returns b""), watching
    its processes meanwhile."""
    while True:
        readable, _, _ = select.select([fd], [], [], WATCH_S)
        if readable and not os.read(fd, 4096):
            return
        session.watch()


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    fd, marker, files = int(argv[0]), argv[1], argv[2:]
    session = Session(marker, os.getppid())  # the driver: read now, while it is still the parent
    wait_for_driver(fd, session)
    reap(session)
    for name in files:
        Path(name).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
