"""VSD (`sds.loss: vsd`) against exact maths, and its adapter's state through a resumed trial.

The prior here is the affine prior of `test_losses.py` computed by a network, ε̂(z; y, t) = c_t·z + b_y +
to_q(e_t), whose time embedding e_t and projection `to_q` are zero: the pretrained ε̂ is the affine one, and VSD's
adapter (LoRA B·A on `to_q`, the camera MLP m added to e_t) predicts c_t·z + b_y + B·A·m(c), written out by hand
below from the adapter's own weights.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from unit.sds.test_losses import SHAPE, AffinePrior, T
from unit.trial.test_trial import _without_timing

from dreamfusion.config.schema import SDSConfig, TrialConfig
from dreamfusion.nerf.cameras import Cameras, sample_cameras
from dreamfusion.priors.base import Prior, freeze
from dreamfusion.sds.loss import LossContext, make_loss
from dreamfusion.sds.vsd import VSD, camera_features
from dreamfusion.toyworld.prior import load_toyworld_prior
from dreamfusion.trial.state import TrialState, load_checkpoint, save_checkpoint
from dreamfusion.trial.step import SDSStep

PROMPT = "a red cube"
WIDTH = 8  # of the affine network's time embedding
PIXELS = SHAPE[0] * SHAPE[1] * SHAPE[2]


class TimeEmbedding(nn.Module):
    """Shaped like diffusers' (`linear_2` tells the adapter its width); its last layer is zero, so e_t = 0."""

    def __init__(self) -> None:
        super().__init__()
        self.linear_1, self.linear_2 = nn.Linear(1, WIDTH), nn.Linear(WIDTH, WIDTH)
        nn.init.zeros_(self.linear_2.weight)
        nn.init.zeros_(self.linear_2.bias)

    def forward(self, t: Tensor) -> Tensor:
        return self.linear_2(torch.nn.functional.silu(self.linear_1(t)))


class AffineNetwork(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.time_embedding = TimeEmbedding()
        self.to_q = nn.Linear(WIDTH, PIXELS, bias=False)  # one of the projections LoRA adapts
        nn.init.zeros_(self.to_q.weight)

    def forward(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        e_t = self.time_embedding(t.float()[:, None] / T)  # [N, WIDTH]
        return (t.float() / T).view(-1, 1, 1, 1) * z_t + emb + self.to_q(e_t).view(z_t.shape)


class NetworkPrior(AffinePrior):
    network_attribute = "unet"

    def __init__(self) -> None:
        super().__init__()
        self.unet = freeze(AffineNetwork(), self.device)

    def predict_noise(self, z_t: Tensor, t: Tensor, emb: Tensor) -> Tensor:
        self.calls.append(z_t.shape[0])
        return self.unet(z_t, t, emb)


def _cameras(b: int) -> Cameras:
    c2w = torch.eye(4).repeat(b, 1, 1)
    c2w[:, :3, 3] = torch.randn(b, 3, generator=torch.Generator().manual_seed(5))
    return Cameras(c2w, 40.0, torch.zeros(b), torch.zeros(b))


def _vsd(prior: NetworkPrior, **options) -> VSD:
    loss = make_loss(SDSConfig(loss="vsd", guidance_scale=7.5, **options))
    loss.start(prior, seed=0)
    assert isinstance(loss, VSD)
    return loss


def _inputs(prior: NetworkPrior, t: list[int]):
    g = torch.Generator().manual_seed(1)
    b = len(t)
    x = torch.randn(b, *SHAPE, generator=g).requires_grad_(True)
    noise = torch.randn(b, *SHAPE, generator=g)
    cond, uncond = prior.text_embeddings([PROMPT + ", front view"] * b), prior.text_embeddings([""] * b)
    context = LossContext(_cameras(b), prior.text_embeddings([PROMPT] * b), torch.Generator().manual_seed(2))
    return x, torch.tensor(t), noise, cond, uncond, context


def _lora(loss: VSD) -> tuple[Tensor, Tensor]:
    """(B, A) of the adapter's LoRA on `to_q`: [PIXELS, r] and [r, WIDTH]."""
    to_q = loss.adapter.network.to_q
    return to_q.lora_B["default"].weight, to_q.lora_A["default"].weight


def _adapter_by_hand(loss: VSD, z_t: Tensor, t: Tensor, emb: Tensor, camera: Tensor) -> Tensor:
    """c_t·z + b + B·A·m(c), in float64."""
    up, down = (w.detach().double() for w in _lora(loss))
    m = copy.deepcopy(loss.adapter.camera_embedding).double()(camera.double())  # [N, WIDTH]
    lora = (m @ down.T @ up.T).view(z_t.shape)
    return (t.double() / T).view(-1, 1, 1, 1) * z_t + emb.double() + lora


@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_gradient_is_the_pretrained_minus_the_adapters_prediction(scale):
    """w(t)(ε̂_cfg − ε̂_φ): ε̂_cfg = c_t·z + b_∅ + 7.5(b_y,view − b_∅) from the view-dependent prompt; ε̂_φ from the
    prompt without its suffix and the camera, guided by `lora_guidance_scale` against no text and the zero camera.
    Nothing else enters, the injected noise ε least of all."""
    prior = NetworkPrior()
    loss = _vsd(prior, lora_guidance_scale=scale)
    with torch.no_grad():
        _lora(loss)[0].normal_(generator=torch.Generator().manual_seed(3))  # an adapter that has learnt something
    x, t, noise, cond, uncond, context = _inputs(prior, [50, 400, 900])
    ab = prior.alphas_cumprod[t].double().view(-1, 1, 1, 1)
    z_t = ab.sqrt() * x.detach().double() + (1 - ab).sqrt() * noise.double()
    camera = camera_features(context.cameras, "extrinsics")
    phi_c = _adapter_by_hand(loss, z_t, t, context.emb_prompt, camera)
    phi_u = _adapter_by_hand(loss, z_t, t, uncond, torch.zeros_like(camera))
    phi = phi_u + scale * (phi_c - phi_u)
    eps_u = (t.double() / T).view(-1, 1, 1, 1) * z_t + uncond.double()
    pretrained = eps_u + 7.5 * (cond.double() - uncond.double())
    expected = (1 - ab) * (pretrained - phi)
    assert (phi - noise.double()).abs().mean() > 0.1  # an SDS residual (ε̂ − ε) would be far from this

    out = loss(prior, x, t, cond, uncond, noise, context)
    out.loss.backward()
    assert torch.allclose(out.grad.double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose((x.grad * 3).double(), expected, rtol=1e-5, atol=1e-5)  # exactly the injected gradient
    assert prior.calls[:2] == [6, 3 if scale == 1 else 6]  # the guided pair; the adapter alone where s_φ = 1


def test_the_adapter_learns_from_its_diffusion_loss_and_leaves_the_prior_alone():
    """One step trains the LoRA and the camera MLP (lr > 0, every trained weight moves), never the prior's network,
    whose ε̂ stays the pretrained one; the render's gradient is the injected one alone (checked above), and the
    adapter's loss leaves no gradient at x."""
    prior = NetworkPrior()
    frozen = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    loss = _vsd(prior, lora_lr=1e-2)
    before = loss.adapter.trained_state()
    x, t, noise, cond, uncond, context = _inputs(prior, [300, 700])
    loss(prior, x, t, cond, uncond, noise, context)
    assert x.grad is None  # the call itself backpropagated only the adapter's loss
    after = loss.adapter.trained_state()
    assert {k for k in before if "lora_A" in k or "lora_B" in k or "camera" in k} == before.keys()
    assert all(not torch.equal(before[k], after[k]) for k in before), "a trained weight did not move"
    assert all(torch.equal(v, prior.unet.state_dict()[k]) for k, v in frozen.items())
    assert not any("lora" in name for name, _ in prior.unet.named_modules())


def test_vsd_needs_the_steps_context():
    prior = NetworkPrior()
    x, t, noise, cond, uncond, _ = _inputs(prior, [300])
    with pytest.raises(ValueError, match="LossContext"):
        _vsd(prior)(prior, x, t, cond, uncond, noise)


def test_mvp_condition_is_projection_times_world_to_camera():
    cams = sample_cameras(TrialConfig(prompt=PROMPT).camera, 2, torch.Generator().manual_seed(0))
    mvp = camera_features(cams, "mvp").view(2, 4, 4)
    ahead = cams.position - 2 * cams.c2w[:, :3, 2]  # 2 units down the camera's −z: the image centre, at depth 2
    clip = torch.einsum("bij,bj->bi", mvp, torch.cat([ahead, torch.ones(2, 1)], dim=1))  # [2, 4]
    assert torch.allclose(clip[:, :2], torch.zeros(2, 2), atol=1e-5)
    assert torch.allclose(clip[:, 3], torch.full((2,), 2.0), atol=1e-5)


# -- resume -------------------------------------------------------------------------------------------------------

TOY = dict(
    prompt=PROMPT,
    steps=2,
    device="cpu",
    nerf={"size": "tiny"},
    render={"resolution": 16, "samples_per_ray": 8, "views_per_step": 1},
    sds={"loss": "vsd", "lora_lr": 1e-2, "lora_camera_dropout": 0.5},
)


def _trial(prior: Prior, cfg: TrialConfig) -> tuple[TrialState, SDSStep]:
    step = SDSStep(cfg, prior)
    return TrialState(cfg, prior.device, step.loss), step


def test_a_resumed_vsd_trial_continues_exactly(tmp_path):
    """The adapter and its optimiser are checkpointed with the trial (as `run_trial` builds it: the state holds the
    step's loss): restored from step 1 into a fresh trial, step 2 logs the same metrics (ε̂_φ is the trained
    adapter's) and leaves the same adapter (AdamW's moments were restored) as the trial that went on. A step costs
    three toy-UNet passes, so two steps it is."""
    prior, cfg = load_toyworld_prior(), TrialConfig.model_validate(TOY)
    state, step = _trial(prior, cfg)
    step(state)
    checkpoint = save_checkpoint(state, tmp_path)
    went_on = _without_timing([step(state)])
    went_on_adapter = state.state_dict()["loss"]["adapter"]

    state, step = _trial(prior, cfg)
    load_checkpoint(state, checkpoint)
    assert _without_timing([step(state)]) == went_on
    adapter = state.state_dict()["loss"]["adapter"]
    assert adapter.keys() == went_on_adapter.keys()
    assert all(torch.equal(adapter[k], went_on_adapter[k]) for k in adapter)


def test_on_a_diffusers_unet_the_adapter_sees_the_camera_and_the_prior_stays_frozen(tmp_path):
    """Stable Diffusion's UNet (tiny, random weights) through the same code: peft finds its attention projections,
    the camera enters its time embedding, and a VSD step trains the adapter without touching the prior's UNet."""
    from tiny_pipelines import make_tiny_sd

    from dreamfusion.config.schema import PriorConfig
    from dreamfusion.priors.base import load_prior

    prior = load_prior(PriorConfig(kind="stable-diffusion", model=str(make_tiny_sd(tmp_path))), "cpu")
    frozen = {k: v.clone() for k, v in prior.unet.state_dict().items()}
    loss = _vsd(prior)  # type: ignore[arg-type]
    assert sum("lora_A" in name for name, _ in loss.adapter.network.named_modules()) > 0
    g = torch.Generator().manual_seed(0)
    x = prior.to_model_space(torch.rand(2, 3, 16, 16, generator=g)).detach().requires_grad_(True)
    t, emb = torch.tensor([300, 700]), prior.text_embeddings([PROMPT] * 2)
    cams = _cameras(2)
    camera = camera_features(cams, "extrinsics")
    with torch.no_grad():
        assert not torch.equal(loss.adapter(x, t, emb, camera), loss.adapter(x, t, emb, camera + 1))
    context = LossContext(cams, emb, torch.Generator().manual_seed(1))
    before = loss.adapter.trained_state()
    out = loss(
        prior, x, t, prior.text_embeddings([PROMPT] * 2), prior.text_embeddings([""] * 2), torch.randn_like(x), context
    )
    assert out.grad.shape == x.shape and torch.isfinite(out.grad).all()
    assert any(not torch.equal(v, loss.adapter.trained_state()[k]) for k, v in before.items())
    assert all(torch.equal(v, prior.unet.state_dict()[k]) for k, v in frozen.items())


def test_a_restored_adapter_keeps_the_configs_learning_rate():
    """As the trial's own optimiser: a checkpoint continued with another `lora_lr` (PBT's perturbation) trains at it."""
    prior = NetworkPrior()
    saved = _vsd(prior).state_dict()
    restored = _vsd(prior, lora_lr=3e-3)
    restored.load_state_dict(saved)
    assert [g["lr"] for g in restored.optim.param_groups] == [3e-3]
