"""Peak of a reading taken on a background thread while a block runs: for memory that `getrusage` cannot see
(Ray worker processes, the GPU as a whole)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class PeakSampler:
    def __init__(self, read: Callable[[], float], period_s: float = 0.5) -> None:
        self.read, self.period_s, self.peak = read, period_s, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.period_s):
            self.peak = max(self.peak, self.read())
