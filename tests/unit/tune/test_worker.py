"""The trial worker's quiet stop: Ray's SIGTERM handler raising SystemExit inside a weakref callback (seen on
resumed sweeps) prints nothing, while any other error raised where Python cannot raise it is still printed."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys, weakref
from dreamfusion.tune.worker import quiet_stop_hook
sys.unraisablehook = quiet_stop_hook

class Node: pass

def stopped(_):
    raise {error}
node = Node()
ref = weakref.ref(node, stopped)
del node  # the callback runs here, and its exception is unraisable
print("still running")
"""


def _run(error: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT.format(error=error)], capture_output=True, text=True, timeout=120, check=True
    )


def test_a_system_exit_in_a_weakref_callback_prints_nothing():
    result = _run("SystemExit(1)")
    assert result.stdout == "still running\n"
    assert result.stderr == ""


@pytest.mark.parametrize("error", ["ValueError('a real bug')", "KeyboardInterrupt()"])
def test_other_unraisable_errors_are_still_printed(error):
    result = _run(error)
    assert "Traceback" in result.stderr and error.split("(")[0] in result.stderr
