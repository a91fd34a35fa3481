"""ISM and SDI (`sds.loss`: ism, sdi) against exact maths on the affine prior of `test_losses.py`, whose
ε̂(z; y, t) = c_t·z + b_y (c_t = t/T) makes every DDIM inversion step computable by hand.

The expected values below walk each view's own ladder of timesteps, written out as literal lists, one DDIM step
at a time: x̂₀ = (x − √(1 − ᾱ_a)·ε̂) / √ᾱ_a, then √ᾱ_b·x̂₀ + √(1 − ᾱ_b)·ε̂. They share no code with
`dreamfusion/sds/inversion.py`. Each test then checks that the obvious mutants (s and t swapped, a random κ, the
x_s prediction dropped) land far outside its tolerance.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from unit.sds.test_losses import SHAPE, AffinePrior, T

from dreamfusion.config.schema import SDSConfig
from dreamfusion.sds.inversion import generator_from
from dreamfusion.sds.loss import make_loss

PROMPT = "a red cube"


@pytest.fixture
def prior() -> AffinePrior:
    return AffinePrior()


def _inputs(prior: AffinePrior, t: list[int]):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(len(t), *SHAPE, generator=g).requires_grad_(True)
    noise = torch.randn(len(t), *SHAPE, generator=g)
    cond, uncond = prior.text_embeddings([PROMPT] * len(t)), prior.text_embeddings([""] * len(t))
    return x, torch.tensor(t), noise, cond, uncond


def _ab(prior: AffinePrior, t: int) -> Tensor:
    return prior.alphas_cumprod[t].double()


def _eps(prior: AffinePrior, z: Tensor, t: int, s: float) -> Tensor:
    """ε_u + s(ε_c − ε_u) of the affine prior, by hand: c_t·z + b_∅ + s(b_y − b_∅)."""
    b_y, b_0 = prior.bias(PROMPT).double(), prior.bias("").double()
    return t / T * z + b_0 + s * (b_y - b_0)


def _step(prior: AffinePrior, z: Tensor, eps: Tensor, a: int, b: int) -> Tensor:
    """One deterministic DDIM step from timestep a to b, written out."""
    x0_hat = (z - (1 - _ab(prior, a)).sqrt() * eps) / _ab(prior, a).sqrt()
    return _ab(prior, b).sqrt() * x0_hat + (1 - _ab(prior, b)).sqrt() * eps


def _ism_by_hand(prior, x0: Tensor, noise: Tensor, t: int, ladder: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """(x_s, ε_∅(x_s, s), x_t) of one view: x₀ noised with ε to the ladder's first rung, unconditional DDIM steps up
    the ladder to s = ladder[-1], one more step from s to t."""
    z = _ab(prior, ladder[0]).sqrt() * x0 + (1 - _ab(prior, ladder[0])).sqrt() * noise
    for a, b in zip(ladder[:-1], ladder[1:]):
        z = _step(prior, z, _eps(prior, z, a, 0.0), a, b)
    eps_s = _eps(prior, z, ladder[-1], 0.0)
    return z, eps_s, _step(prior, z, eps_s, ladder[-1], t)


# ISM's defaults: s = t − 80, the ladder from max(s − 5·200, 0) = 0 in strides of 200, clipped at s.
ISM_LADDERS = {300: [0, 200, 220], 900: [0, 200, 400, 600, 800, 820]}


def test_ism_inverts_by_hand_and_its_gradient_is_the_interval_score(prior):
    """Two views with their own t (and ladders of different lengths, in the same calls): grad = w(t)(ε̂(x_t; y, t) −
    ε(x_s; ∅, s)) with w = sqrt((1 − ᾱ)/ᾱ) (`x0`, the authors' weighting); 5 + 1 unconditional calls of B, one of 2B."""
    x, t, noise, cond, uncond = _inputs(prior, [300, 900])
    out = make_loss(SDSConfig(loss="ism", guidance_scale=7.5, weighting="x0"))(prior, x, t, cond, uncond, noise)
    out.loss.backward()
    expected, mutants = [], {"s and t swapped": [], "x_s prediction dropped": []}
    for i, ti in enumerate(t.tolist()):
        x_s, eps_s, x_t = _ism_by_hand(prior, x[i].detach().double(), noise[i].double(), ti, ISM_LADDERS[ti])
        w = ((1 - _ab(prior, ti)) / _ab(prior, ti)).sqrt()
        eps_hat = _eps(prior, x_t, ti, 7.5)
        expected.append(w * (eps_hat - eps_s))
        s = ISM_LADDERS[ti][-1]
        mutants["s and t swapped"].append(w * (_eps(prior, x_s, s, 7.5) - _eps(prior, x_t, ti, 0.0)))
        mutants["x_s prediction dropped"].append(w * (eps_hat - noise[i].double()))
    # float32 against float64: w(900) = 61 on this schedule scales the rounding of a 6-step inversion
    assert torch.allclose(out.grad.double(), torch.stack(expected), rtol=1e-4, atol=1e-4)
    assert torch.allclose((x.grad * 2).double(), torch.stack(expected), rtol=1e-4, atol=1e-4)  # injected, / B
    assert prior.calls == [2] * 6 + [4]
    for name, mutant in mutants.items():
        assert (out.grad.double() - torch.stack(mutant)).abs().max() > 0.1, name


def test_ism_options_move_the_interval_and_the_ladder(prior):
    """delta_t 50, xs_delta_t 100, xs_inv_steps 2: t = 400 gives s = 350, a ladder from 350 − 200 = 150: 150, 250,
    350, and the residual against ε(x_s; ∅, 350); weighted 1 − ᾱ_t (set: the authors' x0 is the default)."""
    x, t, noise, cond, uncond = _inputs(prior, [400])
    cfg = SDSConfig(loss="ism", guidance_scale=7.5, delta_t=50, xs_delta_t=100, xs_inv_steps=2, weighting="sds")
    out = make_loss(cfg)(prior, x, t, cond, uncond, noise)
    _, eps_s, x_t = _ism_by_hand(prior, x[0].detach().double(), noise[0].double(), 400, [150, 250, 350])
    expected = (1 - _ab(prior, 400)) * (_eps(prior, x_t, 400, 7.5) - eps_s)
    assert torch.allclose(out.grad[0].double(), expected, rtol=1e-5, atol=1e-5)
    assert prior.calls == [1, 1, 1, 2]


def _sdi_by_hand(prior, x0: Tensor, ladder: list[int], g: float, eta: float, z: list[Tensor]) -> Tensor:
    """x_t of one view: DDIM steps from x₀ itself at rung 0 up the ladder with ε_c + g(ε_c − ε_u) (s = g + 1), each
    adding η·σ·z_k, σ² = (1 − ᾱ_a)/(1 − ᾱ_b)·(1 − ᾱ_b/ᾱ_a)."""
    x = x0
    for k, (a, b) in enumerate(zip(ladder[:-1], ladder[1:])):
        sigma = ((1 - _ab(prior, a)) / (1 - _ab(prior, b)) * (1 - _ab(prior, b) / _ab(prior, a))).sqrt()
        x = _step(prior, x, _eps(prior, x, a, g + 1), a, b) + eta * sigma * z[k]
    return x


# SDI's default grid: T/10 = 100 apart from 0, then t.
SDI_LADDERS = {250: [0, 100, 200, 250], 980: [0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 980]}


@pytest.mark.parametrize("eta", [0.0, 0.3])
def test_sdi_inverts_by_hand_and_its_gradient_uses_the_implied_noise(prior, eta):
    """κ = (x_t − √ᾱ_t·x₀)/√(1 − ᾱ_t) from the inverted x_t, grad = w(t)(ε̂(x_t; y, t) − κ); the inversion guided by
    the authors' g = −7.5 in ε_c + g(ε_c − ε_u). With η > 0 step k adds η·σ·z_k, z_k the k-th [B, ...] draw of the
    generator seeded by ε. Ten steps of 2B: the longer ladder's; the shorter view waits at its t."""
    x, t, noise, cond, uncond = _inputs(prior, [250, 980])
    cfg = SDSConfig(loss="sdi", guidance_scale=7.5, inversion_eta=eta, weighting="sds")
    out = make_loss(cfg)(prior, x, t, cond, uncond, noise)
    out.loss.backward()
    gen = generator_from(noise)
    draws = [torch.randn(noise.shape, generator=gen).double() for _ in range(10)]  # [B, ...] per step
    expected, random_kappa = [], []
    for i, ti in enumerate(t.tolist()):
        x0 = x[i].detach().double()
        x_t = _sdi_by_hand(prior, x0, SDI_LADDERS[ti], -7.5, eta, [d[i] for d in draws])
        kappa = (x_t - _ab(prior, ti).sqrt() * x0) / (1 - _ab(prior, ti)).sqrt()
        w = 1 - _ab(prior, ti)
        expected.append(w * (_eps(prior, x_t, ti, 7.5) - kappa))
        x_t_sds = _ab(prior, ti).sqrt() * x0 + (1 - _ab(prior, ti)).sqrt() * noise[i].double()
        random_kappa.append(w * (_eps(prior, x_t_sds, ti, 7.5) - noise[i].double()))
    assert torch.allclose(out.grad.double(), torch.stack(expected), rtol=1e-5, atol=1e-5)
    assert torch.allclose((x.grad * 2).double(), torch.stack(expected), rtol=1e-5, atol=1e-5)
    assert prior.calls == [4] * 11
    assert (out.grad.double() - torch.stack(random_kappa)).abs().max() > 0.1  # κ = ε: SDS, not SDI


def test_sdi_eta_noise_repeats_with_the_step_noise_and_changes_with_it(prior):
    """The inversion's η draws are a function of the step's ε: the same ε gives the same gradient bitwise."""
    x, t, noise, cond, uncond = _inputs(prior, [600])
    loss = make_loss(SDSConfig(loss="sdi"))
    first, again = (loss(prior, x, t, cond, uncond, noise).grad for _ in range(2))
    assert torch.equal(first, again)
    other = loss(prior, x, t, cond, uncond, noise + 1e-3).grad
    assert (other - first).abs().max() > 1e-3


@pytest.mark.parametrize(
    ("loss", "options", "calls"),
    [("sds", {}, 2), ("csd", {}, 2), ("nfsd", {}, 3), ("ism", {}, 8), ("ism", {"xs_inv_steps": 2}, 5),
     ("sdi", {}, 22), ("sdi", {"inversion_n_steps": 4}, 10)],
)  # fmt: skip
def test_prior_calls_per_step_follow_the_options(loss, options, calls):
    assert make_loss(SDSConfig(loss=loss, **options)).prior_calls_per_step() == calls


@pytest.mark.parametrize(
    "sds, weighting",
    [
        ({"loss": "ism"}, "x0"),
        ({"loss": "sdi"}, "x0"),
        ({"loss": "sds"}, "sds"),
        ({"loss": "vsd"}, "sds"),
        ({}, "sds"),
        ({"loss": "ism", "weighting": "sds"}, "sds"),
        ({"loss": "sds", "weighting": "x0"}, "x0"),
    ],
)
def test_a_loss_weights_as_its_authors_did_unless_the_config_names_a_weighting(sds, weighting):
    cfg = SDSConfig.model_validate(sds)
    assert cfg.weighting == weighting
    assert SDSConfig.model_validate(cfg.model_dump()).weighting == weighting  # explicit once dumped
    w = make_loss(cfg).weight(torch.tensor([0.25]).view(1, 1, 1, 1)).item()
    assert w == pytest.approx({"x0": (0.75 / 0.25) ** 0.5, "sds": 0.75}[weighting])
