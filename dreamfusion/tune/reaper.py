"""The embedded Ray's reaper: a small process beside a driver that, once the driver is gone however it went (a
SIGKILL included), stops every process that driver's Ray started. Ray's processes learn of a dead driver late or
never: its agents outlive it (seen: over a minute), and a killed driver runs no `ray.shutdown()`.

`python -m dreamfusion.tune.reaper FD MARKER TEMP_DIR [FILE...]` blocks on reading pipe FD, whose write end only
the driver holds: end-of-file means the driver has exited. The driver's Ray is then every process that carries
`DF_SWEEP_RAY=MARKER` in its environment (the driver set it before starting Ray; workers inherit it) or writes to
a file of the driver's Ray session, `TEMP_DIR/session_<date>_<driver pid>/` (Ray's agents, started with an
environment of their own). Each gets SIGTERM, and SIGKILL if it outlives the grace period; FILEs (the session's
auth token) are removed. It imports nothing heavy, so it starts in milliseconds, and it ignores the terminal's
signals: a Ctrl-C or a hang-up meant for the driver must not take the reaper first.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

MARKER_VAR = "DF_SWEEP_RAY"
GRACE_S = 5.0
POLL_S = 0.1
WRITING = os.O_WRONLY | os.O_RDWR


class Session:
    """How the processes of one driver's Ray are recognised."""

    def __init__(self, marker: str, temp_dir: str, driver_pid: int) -> None:
        self.needle = f"{MARKER_VAR}={marker}".encode()
        self.temp_dir = os.path.realpath(temp_dir) + os.sep
        self.session_suffix = f"_{driver_pid}"
        self.spared = {os.getpid(), driver_pid}  # a driver that stops normally is still finishing its work

    def pids(self) -> list[int]:
        """Live processes of the session (zombies excluded), this one and the driver aside."""
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in self.spared and self._holds(entry):
                found.append(int(entry))
        return found

    def _holds(self, pid: str) -> bool:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False
            return self.needle in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") or self._writes_here(pid)
        except OSError:  # gone while we looked, or not ours to read
            return False

    def _writes_here(self, pid: str) -> bool:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if not target.startswith(self.temp_dir):
                    continue
                session = target[len(self.temp_dir) :].split(os.sep, 1)[0]
                flags = int(Path(f"/proc/{pid}/fdinfo/{fd}").read_text().split("flags:")[1].split()[0], 8)
            except (OSError, IndexError, ValueError):
                continue
            if session.startswith("session_") and session.endswith(self.session_suffix) and flags & WRITING:
                return True
        return False


def reap(session: Session, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every process of the session, SIGKILL those alive after `grace_s`; returns the PIDs signalled."""
    signalled = _signal_all(session, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session.pids() and time.monotonic() < deadline:
        time.sleep(POLL_S)
    deadline = time.monotonic() + grace_s
    while (leftover := _signal_all(session, signal.SIGKILL)) and time.monotonic() < deadline:
        signalled += leftover  # again: one may have forked while we looked
        time.sleep(POLL_S)
    return signalled


def _signal_all(session: Session, signum: int) -> list[int]:
    pids = session.pids()
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:  # already gone
            pass
    return pids


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    fd, marker, temp_dir, files = int(argv[0]), argv[1], argv[2], argv[3:]
    session = Session(marker, temp_dir, os.getppid())  # the driver: read now, while it is still the parent
    while os.read(fd, 4096):  # nothing is ever written: this returns b"" once the driver's end is closed
        pass
    reap(session)
    for name in files:
        Path(name).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
