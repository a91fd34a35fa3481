"""The embedded Ray's reaper: a small process beside a driver that, once the driver is gone however it went (a
SIGKILL included), stops every process that driver's Ray started. Ray's processes learn of a dead driver late or
never: its agents outlive it, and a killed driver runs no `ray.shutdown()`.

`python -m dreamfusion.sweep.reaper FD MARKER [FILE...]` blocks on reading pipe FD, whose write end only the
driver holds: end-of-file means the driver has exited. Then every process whose environment carries
`DF_SWEEP_RAY=MARKER` (the driver sets it before starting Ray, and Ray's processes inherit it) gets SIGTERM, and
SIGKILL if it outlives the grace period; FILEs (the session's auth token) are removed. It imports nothing heavy,
so it starts in milliseconds, and it ignores the terminal's signals: a Ctrl-C or a hang-up meant for the driver
must not take the reaper first.
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


def marked_pids(marker: str) -> list[int]:
    """Live processes (zombies excluded) whose initial environment holds MARKER_VAR=marker, this one aside."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone while we looked, or not ours to read
            continue
        if needle in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def reap(marker: str, grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every marked process, SIGKILL those alive after `grace_s`; returns the PIDs it signalled."""
    signalled = _signal_all(marker, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while marked_pids(marker) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    deadline = time.monotonic() + grace_s
    while (leftover := _signal_all(marker, signal.SIGKILL)) and time.monotonic() < deadline:
        signalled += leftover  # again: one may have forked while we looked
        time.sleep(POLL_S)
    return signalled


def _signal_all(marker: str, signum: int) -> list[int]:
    pids = marked_pids(marker)
    for pid in pids:
        try:
            os.kill(pid, signum)
        except OSError:  # already gone
            pass
    return pids


def main(argv: list[str]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    fd, marker, files = int(argv[0]), argv[1], argv[2:]
    while os.read(fd, 4096):  # nothing is ever written: this returns b"" once the driver's end is closed
        pass
    reap(marker)
    for name in files:
        Path(name).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
