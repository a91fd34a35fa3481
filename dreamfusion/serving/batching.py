"""The denoiser side of a served prior: concurrent ε̂ requests of many trials stacked into one denoiser call.

Each trial's SDS step asks for ε̂ of its 2B rows (both CFG halves) at once and waits. Requests that arrive within
`wait_s` of the first, up to `max_batch` of them, run as one call of the concatenated rows, which is where a GPU
shared by k trials wins: one kernel launch sequence for k requests. Only requests whose inputs agree in shape and
dtype beyond the batch dimension are stacked. With `max_batch` 1 every request runs alone, exactly as the trial's
own prior would run it, so a served trial's metrics equal a local one's bit for bit. Stacked, a request's ε̂ may
differ from its solo value by kernel-level rounding (other batch sizes pick other kernels): at most
`BATCHED_TOLERANCE` of the prior's dtype, which the tests and `benchmarks/gpu_packing.py` measure.

No transport here: a Ray actor (`service.py`) or the packing benchmark's pipes call
`predict_noise` from their own threads. A failing call fails the requests it held and nothing else.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dreamfusion.priors.base import Prior

#: Largest |ε̂_stacked − ε̂_alone| a request may see, by the denoiser's dtype (ε̂ is O(1)).
BATCHED_TOLERANCE: dict[torch.dtype, float] = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 5e-2}


@dataclass
class _Request:
    z_t: Tensor  # [n, C, h, w]
    t: Tensor  # [n]
    emb: Tensor  # [n, L, D]
    future: Future[Tensor] = field(default_factory=Future)

    def key(self) -> tuple[Any, ...]:
        """Requests that can share a call agree on everything but the batch dimension."""
        return self.z_t.shape[1:], self.emb.shape[1:], self.z_t.dtype, self.emb.dtype


@dataclass
class BatchStats:
    requests: int = 0
    calls: int = 0
    largest: int = 0
    """Most requests in one call."""

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "calls": self.calls,
            "largest": self.largest,
            "mean_batch": self.requests / self.calls if self.calls else 0.0,
        }


class BatchingDenoiser:
    """A loaded prior (its denoiser part suffices) behind a thread-safe, batching `encode_text` / `predict_noise`."""

    def __init__(self, prior: Prior, max_batch: int, wait_s: float) -> None:
        self.prior, self.max_batch, self.wait_s = prior, max_batch, wait_s
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue[_Request | None] = queue.SimpleQueue()
        self._model = threading.Lock()  # one call into the networks at a time: same threads, same numbers
        self._worker = threading.Thread(target=self._serve, name="df-prior-batcher", daemon=True)
        self._worker.start()

    def encode_text(self, prompts: list[str]) -> Tensor:
        """[B, L, D] on the prior's device."""
        with self._model, torch.no_grad():
            return self.prior.encode_text(prompts)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        """ε̂ of one request, [n, C, h, w] float32; blocks until the call that holds it has run."""
        request = _Request(z_t, t, emb)
        self._queue.put(request)
        return request.future.result()

    def close(self) -> None:
        self._queue.put(None)
        self._worker.join()

    def _serve(self) -> None:
        while (first := self._queue.get()) is not None:
            batch = [first, *self._gather(time.monotonic() + self.wait_s)]
            groups: dict[tuple[Any, ...], list[_Request]] = {}
            for request in batch:
                groups.setdefault(request.key(), []).append(request)
            for group in groups.values():
                self._run(group)

    def _gather(self, deadline: float) -> list[_Request]:
        """Requests that arrive before `deadline`, up to `max_batch` − 1 more."""
        found: list[_Request] = []
        while len(found) < self.max_batch - 1:
            try:
                request = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if request is None:
                self._queue.put(None)  # stop after this batch
                break
            found.append(request)
        return found

    def _run(self, group: list[_Request]) -> None:
        """One denoiser call for the group, its inputs on the prior's device; ε̂ stays there."""
        device = self.prior.device
        try:
            with self._model, torch.no_grad():
                eps = self.prior.predict_noise(*(_stacked([getattr(r, k) for r in group], device) for k in _INPUTS))
        except Exception as exc:  # the requests of this call fail; the service goes on
            for request in group:
                request.future.set_exception(exc)
            return
        self.stats.requests += len(group)
        self.stats.calls += 1
        self.stats.largest = max(self.stats.largest, len(group))
        for request, part in zip(group, eps.split([r.z_t.shape[0] for r in group])):  # [n, C, h, w] each
            request.future.set_result(part)


_INPUTS = ("z_t", "t", "emb")


def _stacked(tensors: list[Tensor], device: torch.device) -> Tensor:
    """The requests' tensors as one batch on `device` (a lone request as it came: no copy, same kernels)."""
    return (tensors[0] if len(tensors) == 1 else torch.cat(tensors)).to(device)
