"""k SDS trials at once on one device, without Ray: each trial a process running the sweep's own `run_trial`, its
prior loaded whole (local) or served by one more process that holds the denoiser part behind the prior service's
`BatchingDenoiser` (shared), with pipes where a sweep has Ray actor calls. It needs torch, diffusers, transformers,
pydantic and pyyaml only, so it runs on a GPU machine that has none of Ray or MLflow (benchmarks/device_check.sh).

Like a Ray request, a pipe request carries CPU tensors: the latents and embeddings leave the trial's device and
ε̂ comes back, once per step. Trials wait at a barrier once loaded, so their steps overlap.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import threading
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion.config.schema import TrialConfig
from dreamfusion.priors.base import load_prior, resolve_device
from dreamfusion.scoring.metrics import load_scorer
from dreamfusion.serving.batching import BatchingDenoiser
from dreamfusion.serving.served import RemoteDenoiser, ServedPrior
from dreamfusion.trial.loop import run_trial

#: Per-step metrics compared between placements (step_ms is time, not a result).
RESULT_KEYS = ("loss", "loss_sds", "grad_norm", "t", "opacity")
#: What a trial process leaves in its folder: its metrics and steps, or its traceback.
RESULT_FILE = "harness.json"


@dataclass
class TrialRun:
    seed: int
    metrics: dict[str, float]
    steps: list[dict[str, float]]
    pid: int

    @property
    def steps_per_s(self) -> float:
        """Optimisation steps only: 1000 / the median step time (loading, warm-up and evals excluded)."""
        return 1000.0 / statistics.median(s["step_ms"] for s in self.steps)

    def results(self) -> list[tuple[float, ...]]:
        return [tuple(s[k] for k in RESULT_KEYS) for s in self.steps]


@dataclass
class Packing:
    k: int
    placement: str
    trials: list[TrialRun]
    peak_bytes: float
    batching: dict[str, float] = field(default_factory=dict)

    @property
    def total_steps_per_s(self) -> float:
        return sum(t.steps_per_s for t in self.trials)


class PipeDenoiser(RemoteDenoiser):
    """A trial's end of the harness's service: the `Denoiser` protocol over a pipe."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def _call(self, method: str, *args: Any) -> Any:
        self.conn.send((method, args))
        status, value = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"prior service: {value}")
        return value


def _serve_one(conn: Connection, batcher: BatchingDenoiser) -> None:
    """One trial's requests, answered on this thread until the trial hangs up."""
    calls = {
        "encode_text": lambda prompts: batcher.encode_text(prompts).cpu(),
        "predict_noise": lambda z_t, t, emb: batcher.predict_noise(z_t, t, emb).cpu(),
        "describe": lambda: f"{batcher.prior.describe()}, served by pid {os.getpid()} (harness)",
        "weight_digests": batcher.prior.weight_digests,
    }
    while True:
        try:
            method, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("ok", calls[method](*args)))
        except Exception as exc:  # the trial gets the reason; the service goes on
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def service_process(cfg_json: str, threads: int, conns: list[Connection], stats_file: str) -> None:
    """The shared prior: the denoiser part behind the batcher, a thread per trial; its batching stats at the end."""
    torch.set_num_threads(threads)
    cfg = TrialConfig.model_validate_json(cfg_json)
    prior = load_prior(cfg.prior, cfg.device, part="denoiser")
    batcher = BatchingDenoiser(prior, cfg.prior.max_batch, cfg.prior.batch_wait_ms / 1000)
    servers = [threading.Thread(target=_serve_one, args=(c, batcher), daemon=True) for c in conns]
    for server in servers:
        server.start()
    for server in servers:
        server.join()
    Path(stats_file).write_text(json.dumps(batcher.stats.as_dict()))


def trial_process(cfg_json: str, out: str, threads: int, conn: Connection | None, barrier: Any) -> None:
    """One trial; its result, or its traceback, goes to `out`/harness.json."""
    record: dict[str, Any]
    try:
        torch.set_num_threads(threads)
        cfg = TrialConfig.model_validate_json(cfg_json)
        if conn is None:
            prior = load_prior(cfg.prior, cfg.device)
        else:
            prior = ServedPrior(load_prior(cfg.prior, cfg.device, part="codec"), PipeDenoiser(conn))
        scorer = load_scorer(cfg.scoring, resolve_device(cfg.device), prior)
        prior.text_embedding("")  # the first request waits for the service to load, before the clock starts
        barrier.wait()
        result = run_trial(cfg, Path(out), prior=prior, scorer=scorer)
        record = {"seed": cfg.seed, "metrics": result.metrics, "steps": result.history, "pid": os.getpid()}
    except BaseException:
        barrier.abort()
        record = {"error": traceback.format_exc()}
    finally:
        if conn is not None:
            conn.close()  # the service's thread for this trial ends
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / RESULT_FILE).write_text(json.dumps(record))


def run_packing(cfgs: list[TrialConfig], placement: str, work: Path, threads: int, memory: Any) -> Packing:
    """Run the trials at once; `memory(pids)` is a context manager whose `.peak` is the peak memory in use."""
    ctx = mp.get_context("spawn")  # CUDA cannot be forked; the same on every platform
    barrier = ctx.Barrier(len(cfgs))
    pipes = [ctx.Pipe() for _ in cfgs] if placement == "shared" else []
    outs = [work / f"trial{i}" for i in range(len(cfgs))]
    trials = [
        ctx.Process(target=trial_process, args=(c.model_dump_json(), str(o), threads, p[0] if p else None, barrier))
        for c, o, p in zip(cfgs, outs, pipes or [()] * len(cfgs))
    ]
    service = None
    if pipes:
        args = (cfgs[0].model_dump_json(), threads, [server for _, server in pipes], str(work / "service.json"))
        service = ctx.Process(target=service_process, args=args)
    procs = [p for p in (service, *trials) if p is not None]
    for proc in procs:
        proc.start()
    for pipe in pipes:  # the children hold their own ends now; the service sees a trial hang up when it does
        for end in pipe:
            end.close()
    with memory([p.pid for p in procs]) as peak:
        for proc in trials:
            proc.join()
    if service is not None:
        service.join(timeout=120)
    records = [
        json.loads((o / RESULT_FILE).read_text()) if (o / RESULT_FILE).exists() else {"error": "no result"}
        for o in outs
    ]
    failed = [r["error"] for r in records if "error" in r]
    if failed:
        raise RuntimeError(f"{placement} k={len(cfgs)}: a trial failed:\n{failed[0]}")
    runs = [TrialRun(r["seed"], r["metrics"], r["steps"], r["pid"]) for r in records]
    batching = json.loads((work / "service.json").read_text()) if service is not None else {}
    return Packing(len(cfgs), placement, runs, peak.peak, batching)


def rss_bytes(pids: list[int]) -> float:
    """Resident memory of these processes now, from /proc (no psutil on a bare GPU machine)."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # not started yet, or gone
            continue
    return float(total * os.sysconf("SC_PAGE_SIZE"))


def stacked_max_abs_diff(cfg: TrialConfig, k: int) -> float:
    """max |ε̂ stacked − ε̂ alone| over k CFG-shaped requests stacked into one call, by the service's batcher."""
    prior = load_prior(cfg.prior, cfg.device, part="denoiser")
    g = torch.Generator().manual_seed(0)
    latent = prior.unet_config["sample_size"]
    emb = prior.encode_text(["", cfg.prompt]).cpu()  # [2, L, D]
    requests = [
        (torch.randn(2, prior.unet_config["in_channels"], latent, latent, generator=g), torch.tensor([t, t]), emb)
        for t in torch.randint(20, 980, (k,), generator=g).tolist()
    ]
    alone = BatchingDenoiser(prior, max_batch=1, wait_s=0.0)
    solo = [alone.predict_noise(*r).cpu() for r in requests]
    alone.close()
    stacked = BatchingDenoiser(prior, max_batch=k, wait_s=30.0)  # waits until all k have arrived
    together: list[Tensor | None] = [None] * k

    def ask(i: int) -> None:
        together[i] = stacked.predict_noise(*requests[i]).cpu()

    askers = [threading.Thread(target=ask, args=(i,)) for i in range(k)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    stacked.close()
    assert stacked.stats.largest == k, "the requests were not stacked"
    return max(float((a - b).abs().max()) for a, b in zip(solo, together) if b is not None)
