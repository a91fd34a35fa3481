"""The trial process's own resources, sampled on a thread while the trial runs and logged under `system/` (the MLflow
UI's "System metrics" tab). MLflow's own monitor reports the whole machine, which two trials sharing a node would
both claim; these are the trial's: a Ray worker runs one trial at a time.

    system/cpu_percent             CPU time of this process over the last interval, % of one core (200 = two busy)
    system/rss_mb                  resident memory of this process, MiB
    system/peak_rss_mb             the most resident memory this trial has held so far, MiB (the kernel's
                                   high-water mark, reset when the trial starts; else the largest sample)
    system/gpu_utilization_percent NVML: the trial's GPU busy %, the whole device (NVML cannot split it by process)
    system/gpu_memory_mb           NVML: GPU memory this process holds on that device (CUDA context included);
                                   where NVML does not list the process (a container's PIDs), torch's reserved
    system/gpu_peak_memory_mb      torch: the most GPU memory this trial's tensors have held, MiB
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from dreamfusion.tracking.schema import SYSTEM_PREFIX

MIB = 2**20
#: Writing 5 here resets this process's peak resident memory (VmHWM) on Linux: a per-trial peak in a reused worker.
CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


class SystemSampler:
    """Samples every `every_s` seconds on a daemon thread; the trial's logging drains the samples with its own
    writes (no second writer to the store), each at the trial step it was taken at."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.step = 0  # the trial's current step, set by its callback
        self.process = psutil.Process()
        self.samples: list[tuple[int, int, dict[str, float]]] = []  # (time ms, step, metrics)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="system-metrics", daemon=True)
        self.kernel_peak = _reset_peak_rss()
        self.peak_rss = 0.0
        self.gpu = _Gpu.open()

    def start(self) -> SystemSampler:
        self.process.cpu_percent(None)  # the first call only starts psutil's interval
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and take the last sample: the trial's peak as it ends."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        self._take()

    def drain(self) -> list[tuple[int, int, dict[str, float]]]:
        with self.lock:
            taken, self.samples = self.samples, []
        return taken

    def _run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self._take()

    def _take(self) -> None:
        sample = {f"{SYSTEM_PREFIX}{k}": v for k, v in self.sample().items()}
        with self.lock:
            self.samples.append((int(time.time() * 1000), self.step, sample))

    def sample(self) -> dict[str, float]:
        with self.process.oneshot():
            cpu = self.process.cpu_percent(None)
            rss = self.process.memory_info().rss / MIB
        self.peak_rss = max(self.peak_rss, rss, _kernel_peak_rss() if self.kernel_peak else 0.0)
        return {"cpu_percent": cpu, "rss_mb": rss, "peak_rss_mb": self.peak_rss, **self.gpu.sample()}


def _reset_peak_rss() -> bool:
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:  # not Linux, or not allowed: the peak is then the largest sample
        return False


def _kernel_peak_rss() -> float:
    for line in STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MIB
    return 0.0


class _Gpu:
    """NVML's view of the CUDA device this process uses (matched by UUID: NVML numbers devices without regard to
    CUDA_VISIBLE_DEVICES), and torch's peak of its allocations; nothing where there is no GPU or no NVML."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle

    @classmethod
    def open(cls) -> _Gpu:
        if not torch.cuda.is_available():
            return cls(None, None)
        torch.cuda.reset_peak_memory_stats()
        try:
            import pynvml

            pynvml.nvmlInit()
            uuid = f"GPU-{torch.cuda.get_device_properties(torch.cuda.current_device()).uuid}"
            return cls(pynvml, pynvml.nvmlDeviceGetHandleByUUID(uuid))
        except Exception:  # nvidia-ml-py not installed, or NVML unusable here: torch's own numbers remain
            return cls(None, None)

    def sample(self) -> dict[str, float]:
        if not torch.cuda.is_available():
            return {}
        out = {"gpu_peak_memory_mb": torch.cuda.max_memory_allocated() / MIB}
        if self.handle is not None:
            out["gpu_utilization_percent"] = float(self.nvml.nvmlDeviceGetUtilizationRates(self.handle).gpu)
            listed = self.nvml.nvmlDeviceGetComputeRunningProcesses(self.handle)
            mine = [p.usedGpuMemory for p in listed if p.pid == os.getpid() and p.usedGpuMemory is not None]
            out["gpu_memory_mb"] = (sum(mine) if mine else torch.cuda.memory_reserved()) / MIB
        return out
