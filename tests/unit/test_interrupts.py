"""A Ctrl-C during an MLflow write is held until the write ends (a real SIGINT to this process)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from dreamfusion.interrupts import held_interrupt


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own SIGINT handler (raise KeyboardInterrupt) for each test, whatever an earlier test left."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_inside_the_block_is_raised_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with held_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the write finished")
    assert done == ["the write finished"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_a_ctrl_c_nothing_is_raised_and_the_handler_is_restored():
    with held_interrupt():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_in_another_thread_it_does_nothing():
    """Only the main thread may set signal handlers (a Tune trial runs in a thread of its own)."""
    errors = []

    def write() -> None:
        try:
            with held_interrupt():
                pass
        except Exception as exc:  # any error here is the failure
            errors.append(exc)

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert errors == []
