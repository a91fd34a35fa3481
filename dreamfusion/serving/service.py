"""Shared priors in a sweep (`prior.placement: shared`): one prior service per node, or per GPU where a node has
several, that holds the text encoder and denoiser once and batches the ε̂ requests of every trial placed there.

Three pieces, all Ray actors and calls (no sockets of their own):
- the driver starts a `ServiceDirectory` for the launch (`prior_services`) and kills it at the end;
- a trial asks the directory for the service of its (prior config, prior-side `speed.*` switches, node, GPU); the
  directory creates it there on first use, so the directory, not a trial, owns it: a trial that fails or is killed
  never takes it down, and the services die with the directory when the launch ends;
- the trial's `ServedPrior` (codec part local, `RayDenoiser` for the rest) sends each request and waits.
A service that dies fails the requests in flight with `PriorServiceError`; Tune retries those trials
(`max_failures`), and the retry's request to the directory starts a new service.

Ray resources: a service asks for none. Trials keep their `resources` (a fractional `gpu` packs k of them onto one
GPU for scheduling); the service of a GPU sees that GPU whatever Ray assigned (it opts out of Ray's
CUDA_VISIBLE_DEVICES) and its memory is not counted by Ray: the prior's weights once per GPU.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

from dreamfusion.config.schema import PriorConfig
from dreamfusion.errors import first_line
from dreamfusion.priors.base import load_prior
from dreamfusion.serving.batching import BatchingDenoiser
from dreamfusion.serving.served import RemoteDenoiser
from dreamfusion.sweep.spec import SweepSpec

DIRECTORY = "df-prior-services"
#: Concurrent requests one service accepts: one per trial on its node or GPU.
MAX_TRIALS_PER_SERVICE = 64
#: Ray leaves CUDA_VISIBLE_DEVICES alone in a process that sets this: the service sees its node's GPUs.
NOSET_CUDA = "RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"


class PriorServiceError(RuntimeError):
    """The prior service a trial depends on died: the trial fails, and Tune retries it."""


class PriorService:
    """The actor: the denoiser part of one prior on one device, behind a batching queue."""

    def __init__(self, prior_json: str, gpu: str | None, threads: int) -> None:
        torch.set_num_threads(threads)  # as many as one trial has: the same kernels, so the same numbers
        cfg = PriorConfig.model_validate_json(prior_json)
        self.prior = load_prior(cfg, _device(gpu), part="denoiser")
        self.batcher = BatchingDenoiser(self.prior, cfg.max_batch, cfg.batch_wait_ms / 1000)

    def encode_text(self, prompts: list[str]) -> Tensor:
        return self.batcher.encode_text(prompts).cpu()

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        return self.batcher.predict_noise(z_t, t, emb).cpu()

    def describe(self) -> str:
        import ray

        node = ray.get_runtime_context().get_node_id()
        return f"{self.prior.describe()}, served by pid {os.getpid()} on node {node[:12]}"

    def weight_digests(self) -> dict[str, str]:
        return self.prior.weight_digests()

    def stats(self) -> dict[str, float]:
        """How much batching happened, and the process (for tests and benchmarks)."""
        return {**self.batcher.stats.as_dict(), "pid": os.getpid()}


def _device(gpu: str | None) -> str:
    """The torch device of physical GPU `gpu` in this process (which sees the GPUs its node was started with)."""
    if gpu is None:
        return "cpu"
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g]
    return f"cuda:{visible.index(gpu) if visible else int(gpu)}"


class ServiceDirectory:
    """The launch's one directory of services: creates each on its node the first time a trial asks for it, and a
    new one when a trial reports it dead. It holds the creating handle of every one: Ray ends an actor once no
    counted handle to it is left (handles found by name do not count), so the services live exactly as long as
    the directory, whatever happens to the trials."""

    def __init__(self) -> None:
        self.services: dict[str, Any] = {}
        self.started: dict[str, int] = {}

    def service(self, prior_json: str, node_id: str, gpu: str | None, threads: int, dead: Any = None) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        key = service_name(prior_json, node_id, gpu)
        if self.services.get(key) not in (None, dead):  # handles compare by actor
            return self.services[key]
        self.started[key] = self.started.get(key, 0) + 1
        options: dict[str, Any] = {
            "name": f"{key}-{self.started[key]}",
            "num_cpus": 0,
            "max_concurrency": MAX_TRIALS_PER_SERVICE,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False),
        }
        if gpu is not None:
            options["runtime_env"] = {"env_vars": {NOSET_CUDA: "1"}}
        self.services[key] = ray.remote(PriorService).options(**options).remote(prior_json, gpu, threads)
        return self.services[key]


def service_name(prior_json: str, node_id: str, gpu: str | None) -> str:
    digest = hashlib.sha1(prior_json.encode()).hexdigest()[:12]
    return f"df-prior-{digest}-{node_id[:12]}-{'cpu' if gpu is None else f'gpu{gpu}'}"


class RayDenoiser(RemoteDenoiser):
    """A trial's end of its service: each call goes to the actor and waits; a dead service is PriorServiceError."""

    def __init__(self, handle: Any, where: str) -> None:
        self.handle, self.where = handle, where

    def _call(self, method: str, *args: Any) -> Any:
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        try:
            return ray.get(getattr(self.handle, method).remote(*args))
        except (RayActorError, ActorUnavailableError) as exc:
            raise PriorServiceError(
                f"the shared prior service {self.where} died ({first_line(exc)}); the trial fails and Tune "
                "retries it with a new service"
            ) from exc


def connect(prior: PriorConfig, threads: int) -> RayDenoiser:
    """The service of this trial's prior on this trial's node and GPU, started if need be (or again, if the one the
    directory knows has died); waits until it has loaded, as a local load would. No `speed.*` switch reaches a
    service: `shared_trunk` acts on a trial's guided call, which arrives here already widened."""
    import ray

    gpus = [str(g) for g in ray.get_gpu_ids()]
    args = (prior.model_dump_json(), ray.get_runtime_context().get_node_id(), gpus[0] if gpus else None, threads)
    directory = ray.get_actor(DIRECTORY)
    denoiser = RayDenoiser(ray.get(directory.service.remote(*args)), service_name(*args[:3]))
    try:
        denoiser.describe()
    except PriorServiceError:
        denoiser = RayDenoiser(ray.get(directory.service.remote(*args, dead=denoiser.handle)), denoiser.where)
        denoiser.describe()
    return denoiser


def uses_shared_priors(spec: SweepSpec) -> bool:
    """Whether any trial of the sweep can have `prior.placement: shared`."""
    values = spec.space["prior.placement"].extremes() if "prior.placement" in spec.space else []
    return "shared" in values or spec.trial_config({}).prior.placement == "shared"


@contextmanager
def prior_services(spec: SweepSpec) -> Iterator[None]:
    """The launch's service directory while its trials run (none when no trial shares a prior); the services die
    with it, since it owns them."""
    if not uses_shared_priors(spec):
        yield
        return
    import ray

    directory: Any = ray.remote(ServiceDirectory).options(name=DIRECTORY, num_cpus=0).remote()
    try:
        yield
    finally:
        ray.kill(directory)
