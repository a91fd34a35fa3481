"""Variational Score Distillation (VSD; Wang et al. 2023, "ProlificDreamer", NeurIPS 2023), eq. 9:

    ∇θ L_VSD = E_{t,ε,c}[ w(t) · (ε̂_pretrained(z_t; y, t) − ε̂_φ(z_t; y, t, c)) · ∂x/∂θ ],   z_t = α_t·x + σ_t·ε

SDS's ε is replaced by ε̂_φ, the score of the distribution of the NeRF's own renders: a low-rank adapter (LoRA) of
the prior's denoiser, conditioned on the camera c and trained online on the detached renders with the ordinary
diffusion loss ‖ε̂_φ(α_t'·x + σ_t'·ε'; y, t', c) − ε'‖² at a fresh t', ε'. The render then follows the difference of
two scores rather than a score minus its own noise, which is why VSD works at the usual guidance of 7.5 where SDS
needs 100.

Both predictions are guided, each with its own scale: ε̂_pretrained by `guidance_scale` (read in
`guidance_convention`), ε̂_φ by `lora_guidance_scale` in the diffusers convention, its unconditional side having no
text and the zero camera. As in threestudio, ε̂_pretrained sees the view-dependent prompt, and the adapter the prompt
without its view suffix: the camera takes the suffix's role.

The reference is threestudio's `stable-diffusion-vsd-guidance` with one model (`configs/prolificdreamer.yaml`): LoRA
of rank 4 (initialised as diffusers' LoRA layers: down N(0, 1/r), up 0) on the attention projections, and the
camera (the flattened 4×4 camera-to-world matrix, or model-view-projection) through a two-layer MLP added to the
time embedding (threestudio makes it the UNet's class embedding, which diffusers adds there). The adapter's update
follows the gradient's prediction, as threestudio's single optimiser step does: AdamW at lr 1e-4 with the betas and
eps of its prolificdreamer optimiser, one update per step, each drawing t' from [0, T), and the zero camera 10% of
the time so that the unconditional side is trained too.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from dreamfusion import registry
from dreamfusion.errors import ConfigError
from dreamfusion.nerf.cameras import Cameras
from dreamfusion.priors.base import Prior
from dreamfusion.sds.guidance import guided_noise
from dreamfusion.sds.loss import Loss, LossContext, SDSOutput, noised

#: The attention projections LoRA adapts (diffusers' names, which the toy UNet keeps): threestudio's
#: LoRAAttnProcessor adapts the same four.
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
#: A camera condition is a 4×4 matrix, flattened (threestudio's `TimestepEmbedding(16, ...)`).
CAMERA_FEATURES = 16
#: threestudio's prolificdreamer optimiser, which trains its NeRF and the adapter together: AdamW's betas and eps.
ADAPTER_BETAS, ADAPTER_EPS = (0.9, 0.99), 1e-15
#: threestudio's random-camera projection: near and far planes.
NEAR, FAR = 0.1, 1000.0


@registry.register
class VSD(Loss):
    name = "vsd"
    summary = (
        "Variational Score Distillation w(t)(ε̂_pretrained − ε̂_φ), ε̂_φ a camera-conditioned LoRA of the prior "
        "trained on the renders (ProlificDreamer, Wang et al. 2023)"
    )

    class Options(registry.Options):
        lora_rank: int = Field(4, ge=1)
        """Rank of the LoRA on the denoiser's attention projections (threestudio: diffusers' LoRAAttnProcessor, 4)."""
        lora_lr: float = Field(1e-4, gt=0)
        """AdamW learning rate of the adapter and its camera MLP (prolificdreamer.yaml: `optimizer.params.guidance`)."""
        lora_guidance_scale: float = Field(1.0, ge=0)
        """The adapter's classifier-free guidance, in the diffusers convention (threestudio `guidance_scale_lora`);
        1 is its conditional prediction alone, one denoiser call."""
        lora_updates: int = Field(1, ge=1)
        """Adapter updates per step, each on fresh t' and ε' (threestudio: 1)."""
        lora_timesteps: int = Field(1, ge=1)
        """t' drawn per render in each update, the renders repeated (threestudio `lora_n_timestamp_samples`)."""
        lora_camera_dropout: float = Field(0.1, ge=0, le=1)
        """Chance that an update sees the zero camera, which trains the adapter's unconditional side (threestudio
        `lora_cfg_training`: 0.1; the text stays the prompt, as there)."""
        camera_condition: Literal["extrinsics", "mvp"] = "extrinsics"
        """What the adapter sees of a view: its camera-to-world matrix, or projection × world-to-camera (threestudio
        `camera_condition_type`)."""

    adapter: CameraAdapter
    optim: torch.optim.Optimizer

    def prior_calls_per_step(self) -> int:
        """The pretrained guided pair (2), ε̂_φ (1, or 2 when guided), and in each adapter update a forward and a
        backward pass (about 3 forwards' time) per `lora_timesteps` image."""
        o = self.options
        return 2 + (1 if o.lora_guidance_scale == 1 else 2) + 3 * o.lora_updates * o.lora_timesteps

    def start(self, prior: Prior, seed: int) -> None:
        """A fresh adapter (its LoRA and camera MLP drawn from `seed`, apart from the global RNG) and its optimiser."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.adapter = CameraAdapter(prior, self.options.lora_rank)
        params = [p for p in self.adapter.parameters() if p.requires_grad]
        self.optim = torch.optim.AdamW(params, lr=self.options.lora_lr, betas=ADAPTER_BETAS, eps=ADAPTER_EPS)

    def state_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter.trained_state(), "optim": self.optim.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The adapter and its AdamW moments; the learning rate stays the config's, as the trial's optimiser's does
        (a PBT trial may continue another's checkpoint with a perturbed `lora_lr`)."""
        self.adapter.load_trained_state(state["adapter"])
        self.optim.load_state_dict(state["optim"])
        for group in self.optim.param_groups:
            group["lr"] = self.options.lora_lr

    def __call__(
        self,
        prior: Prior,
        x: Tensor,
        t: Tensor,
        emb_cond: Tensor,
        emb_uncond: Tensor,
        noise: Tensor,
        context: LossContext | None = None,
    ) -> SDSOutput:
        if context is None:
            raise ValueError("vsd: the adapter needs the step's cameras and generator (a LossContext)")
        cfg = self.cfg
        alpha_bar = prior.alphas_cumprod[t].view(-1, 1, 1, 1)  # [B, 1, 1, 1]
        z_t = noised(x.detach(), noise, alpha_bar)
        camera = camera_features(context.cameras, self.options.camera_condition)  # [B, 16]
        with torch.no_grad():
            eps_pretrained = guided_noise(
                prior, z_t, t, emb_cond, emb_uncond, cfg.guidance_scale, cfg.guidance_convention
            )
            eps_phi = self.adapter_noise(z_t, t, context.emb_prompt, emb_uncond, camera)
        out = self.gradient(x, eps_pretrained - eps_phi, alpha_bar, eps_pretrained)
        for _ in range(self.options.lora_updates):
            self.train_adapter(prior, x.detach(), context.emb_prompt, camera, context.generator)
        return out

    def adapter_noise(self, z_t: Tensor, t: Tensor, emb_prompt: Tensor, emb_uncond: Tensor, camera: Tensor) -> Tensor:
        """ε̂_φ = ε_φ(∅, 0) + s_φ(ε_φ(y, c) − ε_φ(∅, 0)) [B, C, h, w]; at s_φ = 1 that is ε_φ(y, c), one call of B."""
        s = self.options.lora_guidance_scale
        if s == 1:
            return self.adapter(z_t, t, emb_prompt, camera)
        eps_c, eps_u = self.adapter(
            torch.cat([z_t, z_t]),
            torch.cat([t, t]),
            torch.cat([emb_prompt, emb_uncond]),
            torch.cat([camera, torch.zeros_like(camera)]),
        ).chunk(2)
        return eps_u + s * (eps_c - eps_u)

    def train_adapter(self, prior: Prior, x: Tensor, emb_prompt: Tensor, camera: Tensor, g: torch.Generator) -> Tensor:
        """One AdamW step on the adapter's diffusion loss ‖ε̂_φ(z_t'; y, t', c) − ε'‖² at `lora_timesteps` fresh t'
        per render of x [B, C, h, w] (detached: the render gets no gradient from it). Returns the loss []."""
        n = self.options.lora_timesteps
        x0 = x.repeat(n, 1, 1, 1)  # [n·B, C, h, w]
        t = torch.randint(0, prior.num_train_timesteps, (x0.shape[0],), generator=g).to(x.device)
        noise = torch.randn(x0.shape, generator=g).to(x.device)
        if float(torch.rand((), generator=g)) < self.options.lora_camera_dropout:
            camera = torch.zeros_like(camera)
        z_t = noised(x0, noise, prior.alphas_cumprod[t].view(-1, 1, 1, 1))
        emb = emb_prompt.repeat(n, *[1] * (emb_prompt.ndim - 1))
        loss = F.mse_loss(self.adapter(z_t, t, emb, camera.repeat(n, 1)), noise)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        return loss.detach()


class CameraAdapter(nn.Module):
    """ε̂_φ(z_t; y, t, c): a copy of the prior's network that shares its frozen weights, with LoRA (peft) on the
    attention projections and the camera MLP's output added to the time embedding. The prior and its network are
    left as they were: other trials (and the pretrained prediction) may share them."""

    def __init__(self, prior: Prior, rank: int) -> None:
        super().__init__()
        try:  # seconds to import (it brings transformers): VSD's alone
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as exc:
            raise ConfigError("sds.loss: vsd needs peft (pip install 'df-sweep[vsd]')") from exc

        network = prior.network()
        frozen = {id(p): p for p in itertools.chain(network.parameters(), network.buffers())}
        lora = LoraConfig(r=rank, lora_alpha=rank, target_modules=LORA_TARGETS, init_lora_weights="gaussian")
        self.network = inject_adapter_in_model(lora, copy.deepcopy(network, frozen))
        time_embedding: Any = self.network.time_embedding  # diffusers' TimestepEmbedding, or the toy UNet's copy of it
        width = int(time_embedding.linear_2.out_features)
        camera = nn.Sequential(nn.Linear(CAMERA_FEATURES, width), nn.SiLU(), nn.Linear(width, width))
        self.camera_embedding = camera.to(prior.device)
        for p in self.trained():
            p.data = p.data.float()  # an fp16 prior's adapter still trains in float32, as threestudio's
        self.prior = prior.with_network(self.network)
        self.camera: Tensor | None = None  # [N, 16] for the call in progress
        time_embedding.register_forward_hook(self._add_camera)

    def forward(self, z_t: Tensor, t: Tensor, emb: Tensor, camera: Tensor) -> Tensor:
        """ε̂_φ [N, C, h, w] of z_t [N, C, h, w], t [N], emb [N, ...] and camera [N, 16], through the prior's
        `predict_noise` (its dtype and ε/v conventions)."""
        self.camera = camera
        try:
            return self.prior.predict_noise(z_t, t, emb)
        finally:
            self.camera = None

    def _add_camera(self, module: nn.Module, inputs: Any, temb: Tensor) -> Tensor:
        """The time embedding [N, D] plus the camera's: where diffusers adds a class embedding."""
        assert self.camera is not None, "the adapter's network runs only through CameraAdapter.forward"
        return temb + self.camera_embedding(self.camera).to(temb.dtype)

    def trained(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def trained_state(self) -> dict[str, Tensor]:
        """The LoRA and camera MLP weights, by name: the adapter less the prior's frozen weights it shares."""
        return {name: p.detach().clone() for name, p in self.named_parameters() if p.requires_grad}

    def load_trained_state(self, state: dict[str, Tensor]) -> None:
        own = dict(self.named_parameters())
        if state.keys() != self.trained_state().keys():
            raise ValueError("vsd: the checkpoint's adapter has other weights than this trial's (another lora_rank?)")
        with torch.no_grad():
            for name, value in state.items():
                own[name].copy_(value)


def camera_features(cameras: Cameras, kind: str) -> Tensor:
    """[B, 16]: each view's camera-to-world matrix (`extrinsics`) or projection × world-to-camera (`mvp`), flattened."""
    c2w = cameras.c2w  # [B, 4, 4]
    matrix = c2w if kind == "extrinsics" else projection(cameras.fov).to(c2w) @ torch.linalg.inv(c2w)
    return matrix.flatten(1)


def projection(fov: float) -> Tensor:
    """[4, 4] OpenGL perspective projection of a square image with vertical field of view `fov` (degrees), y flipped,
    as threestudio's `get_projection_matrix`."""
    f = 1 / math.tan(math.radians(fov) / 2)
    depth = (-(FAR + NEAR) / (FAR - NEAR), -2 * FAR * NEAR / (FAR - NEAR))
    return torch.tensor([[f, 0, 0, 0], [0, -f, 0, 0], [0, 0, *depth], [0, 0, -1, 0]])
