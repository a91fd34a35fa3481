"""Holding Ctrl-C while a store is written: a SIGINT that lands inside a SQLite transaction leaves the database
locked by the interrupted connection, so the writes that would record the interrupt fail too. Stdlib only, so the
trial's tracking and the sweep driver both use it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def held_interrupt() -> Iterator[None]:
    """A Ctrl-C that arrives while MLflow writes is raised once the write is done: interrupted inside a
    transaction, a SQLite store stays locked by the interrupted connection, and every later write of this process
    (the one recording the interrupt included) fails with "database is locked". Signals reach the main thread
    only; elsewhere (a Tune trial's thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(signal.SIGINT, None)
        elif received and previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGINT)  # the default action, now that the write is done
