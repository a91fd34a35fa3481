"""A served prior against the same prior loaded whole, on the tiny SD pipeline (loaded from disk as a real
checkpoint): the codec part stays with the trial, the denoiser part sits behind a `BatchingDenoiser` driven from
threads, as a prior service drives it. Solo requests are bit-identical to local ones; stacked ones stay within
the stated tolerance; a bad request fails alone."""

from __future__ import annotations

import threading

import pytest
import torch
from tiny_pipelines import make_tiny_sd

from dreamfusion.config.schema import PriorConfig, SDSConfig
from dreamfusion.priors.base import load_prior
from dreamfusion.sds.sds import SDS
from dreamfusion.serving.batching import BATCHED_TOLERANCE, BatchingDenoiser
from dreamfusion.serving.served import ServedPrior

KIND = "stable-diffusion"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """(whole prior, codec part, denoiser part) of one tiny checkpoint."""
    cfg = PriorConfig(kind=KIND, model=str(make_tiny_sd(tmp_path_factory.mktemp("sd"))))
    return load_prior(cfg, "cpu"), load_prior(cfg, "cpu", part="codec"), load_prior(cfg, "cpu", part="denoiser")


class Direct:
    """The denoiser part called in-process: what a service's batcher wraps, with no transport in between."""

    def __init__(self, batcher: BatchingDenoiser) -> None:
        self.batcher = batcher

    def encode_text(self, prompts):
        return self.batcher.encode_text(prompts)

    def predict_noise(self, z_t, t, emb):
        return self.batcher.predict_noise(z_t, t, emb)

    def describe(self):
        return f"{self.batcher.prior.describe()}, served in-process"

    def weight_digests(self):
        return self.batcher.prior.weight_digests()


def _requests(prior, n: int, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """n CFG-shaped requests (2 rows each: unconditional and conditional) with different latents and timesteps."""
    g = torch.Generator().manual_seed(seed)
    emb = prior.text_embeddings(["", "a red cube"])  # [2, L, D]
    return [
        (torch.randn(2, 4, 8, 8, generator=g), torch.randint(20, 980, (1,), generator=g).repeat(2), emb)
        for _ in range(n)
    ]


def _concurrently(batcher: BatchingDenoiser, requests) -> list[torch.Tensor]:
    results: list[torch.Tensor | None] = [None] * len(requests)

    def ask(i: int) -> None:
        results[i] = batcher.predict_noise(*requests[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results  # type: ignore[return-value]


def test_one_sds_step_through_the_served_prior_equals_the_local_one(parts):
    """The trial's whole use of a prior: embeddings, the VAE encoder with its gradient, guided ε̂, SDS."""
    whole, codec, denoiser = parts
    batcher = BatchingDenoiser(denoiser, max_batch=1, wait_s=0.0)
    served = ServedPrior(codec, Direct(batcher))
    grads = []
    for prior in (whole, served):
        rgb = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1), requires_grad=True)
        x = prior.to_model_space(rgb)
        t = torch.tensor([300, 300])
        noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
        cond, uncond = prior.text_embeddings(["a red cube", "a red cube"]), prior.text_embeddings(["", ""])
        out = SDS(SDSConfig(guidance_scale=7.5))(prior, x, t, cond, uncond, noise)
        out.loss.backward()
        grads.append(rgb.grad)
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0
    assert served.component is type(whole) and served.describe().endswith(
        "of the denoiser, T=1000, epsilon, float32 on cpu, served in-process"
    )
    batcher.close()


def test_a_served_prior_has_the_fingerprint_of_the_whole_and_samples_its_latents_alike(parts):
    """The run's df.prior.sha256 does not depend on placement; `prior.latents: sample` draws from the trial's
    generator in the trial's codec, so the draws are the same too."""
    whole, codec, denoiser = parts
    served = ServedPrior(codec, Direct(BatchingDenoiser(denoiser, 1, 0.0)))
    assert served.fingerprint() == whole.fingerprint() != codec.fingerprint()
    whole.latents = codec.latents = "sample"
    try:
        rgb = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(3))
        drawn = [p.to_model_space(rgb, torch.Generator().manual_seed(4)) for p in (whole, served)]
        assert torch.equal(drawn[0], drawn[1]) and not torch.equal(drawn[0], whole.to_model_space(rgb, None))
    finally:
        whole.latents = codec.latents = "mean"
    served.denoiser.batcher.close()


def test_parts_split_the_modules(parts):
    _, codec, denoiser = parts
    assert codec.unet is None and codec.text_encoder is None and codec.tokenizer is None and codec.vae is not None
    assert denoiser.vae is None and denoiser.unet is not None


def test_solo_requests_are_bit_identical_and_stacked_ones_within_tolerance(parts):
    whole, _, denoiser = parts
    requests = _requests(whole, 4)
    with torch.no_grad():
        alone = [whole.predict_noise(*r) for r in requests]
    solo = BatchingDenoiser(denoiser, max_batch=1, wait_s=0.05)
    assert all(torch.equal(a, b) for a, b in zip(alone, _concurrently(solo, requests)))
    assert solo.stats.as_dict()["largest"] == 1 and solo.stats.calls == 4
    stacked = BatchingDenoiser(denoiser, max_batch=4, wait_s=2.0)  # the 4th request ends the wait
    results = _concurrently(stacked, requests)
    assert stacked.stats.calls == 1 and stacked.stats.largest == 4
    diff = max(float((a - b).abs().max()) for a, b in zip(alone, results))
    assert diff <= BATCHED_TOLERANCE[torch.float32]
    solo.close()
    stacked.close()


def test_a_bad_request_fails_alone_and_the_batcher_goes_on(parts):
    whole, _, denoiser = parts
    batcher = BatchingDenoiser(denoiser, max_batch=2, wait_s=2.0)
    [good] = _requests(whole, 1)
    bad = (torch.randn(2, 3, 8, 8), good[1], good[2])  # 3 channels where the UNet takes 4: its own group
    errors: list[Exception] = []

    def ask_bad() -> None:
        try:
            batcher.predict_noise(*bad)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=ask_bad)
    thread.start()
    result = batcher.predict_noise(*good)
    thread.join()
    assert len(errors) == 1 and result.shape == (2, 4, 8, 8)
    with torch.no_grad():
        assert torch.equal(batcher.predict_noise(*good), whole.predict_noise(*good))
    batcher.close()


def test_the_jacobian_ablation_cannot_run_through_a_served_prior(parts):
    _, codec, denoiser = parts
    served = ServedPrior(codec, Direct(BatchingDenoiser(denoiser, 1, 0.0)))
    z = torch.randn(2, 4, 8, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="sds.jacobian needs prior.placement: local"):
        served.predict_noise(z, torch.tensor([10, 10]), served.text_embeddings(["", ""]))
