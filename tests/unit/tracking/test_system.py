"""The trial process's own system metrics, read from the real process: memory it allocates shows in its RSS and
its peak (which survives the memory being freed), and its CPU % integrates to the CPU time it actually used."""

from __future__ import annotations

import time

import numpy as np

from dreamfusion.tracking.system import SystemSampler

MIB = 2**20


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def test_samples_measure_this_process_and_keep_its_peak():
    started_ms, cpu_started = time.time() * 1000, time.process_time()
    sampler = SystemSampler(every_s=0.05).start()
    time.sleep(0.2)
    block = np.ones(300 * MIB // 8)  # 300 MiB, written
    _busy(0.5)
    del block
    time.sleep(0.2)
    sampler.step = 7
    sampler.stop()
    cpu_used = time.process_time() - cpu_started
    samples = sampler.drain()
    rss = [s["system/rss_mb"] for _, _, s in samples]
    assert len(samples) >= 5 and max(rss) > min(rss) + 250
    last_ms, last_step, last = samples[-1]
    assert last_step == 7
    assert last["system/peak_rss_mb"] >= max(rss) > last["system/rss_mb"] + 250  # freed, and the peak kept
    # cpu_percent is the CPU time of an interval over its length: summed back, the process's CPU time
    times = [started_ms] + [ms for ms, _, _ in samples]
    summed = sum(s["system/cpu_percent"] / 100 * (b - a) / 1000 for (_, _, s), a, b in zip(samples, times, times[1:]))
    assert abs(summed - cpu_used) < 0.25 * cpu_used + 0.05, (summed, cpu_used)
    assert sampler.drain() == []
