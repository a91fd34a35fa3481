"""Where the time of one SDS step goes, and what the Jacobian SDS drops would cost.

    python benchmarks/sds_step.py [--prior auto|analytic|toyworld|PATH] [--steps 30] [--set key=value ...]

Prints a per-phase breakdown (render forward+backward, prior CFG forward, the SDS arithmetic, the optimiser),
peak memory, and as its last line
    step_over_floor=<x> jacobian_over_sds=<y> step_ms=<z>
step_over_floor = full SDS step / (prior CFG forward + render forward+backward): how close the step is to the two
costs no implementation can avoid (target ≤ 1.15). jacobian_over_sds = step with the full UNet Jacobian / SDS step
(the seed's point: expected ≥ 2.5 with a neural prior; the analytic prior's Jacobian is cheap).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import torch

from dreamfusion.config.files import apply_overrides, build_trial_config
from dreamfusion.config.schema import TrialConfig
from dreamfusion.nerf.cameras import sample_cameras, sample_lights
from dreamfusion.nerf.render import Lighting
from dreamfusion.priors.base import Prior, load_prior
from dreamfusion.sds.guidance import guided_noise
from dreamfusion.trial.state import TrialState
from dreamfusion.trial.step import SDSStep


def timed(fn, repeats: int) -> float:
    """Median wall time of fn() in ms (median: the machine is shared and noisy)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def phase_times(cfg: TrialConfig, prior: Prior, repeats: int) -> dict[str, float]:
    """Each unavoidable phase alone, on inputs shaped like a real step's."""
    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    g, device = state.generator, prior.device
    state.occupancy.update(state.field.density)  # as the first training step does
    cams = sample_cameras(cfg.camera, cfg.render.views_per_step, g).to(device)
    light = Lighting("lambertian", sample_lights(cams, g).to(device), cfg.render.ambient, cfg.render.diffuse)
    b = cfg.render.views_per_step

    def render_fwd_bwd():
        out = state.render(cams, light, g, None, need_normals=cfg.reg.orientation > 0)
        (out.rgb.sum() + out.orientation).backward()
        state.optim.zero_grad(set_to_none=True)

    with torch.no_grad():
        x = prior.to_model_space(state.render(cams, light, None, None, False).rgb)
    emb = prior.text_embeddings([cfg.prompt] * b)
    unc = step.uncond.expand(b, *step.uncond.shape[1:])
    t = torch.full((b,), prior.num_train_timesteps // 2, dtype=torch.long, device=device)
    noise = torch.randn_like(x)

    def prior_cfg_forward():
        with torch.no_grad():
            guided_noise(prior, x, t, emb, unc, cfg.sds.guidance_scale, cfg.sds.guidance_convention)

    x_leaf = x.clone().requires_grad_(True)

    def sds_total():
        step.loss(prior, x_leaf, t, emb, unc, noise).loss.backward()

    def optimiser():
        for p in state.field.parameters():
            p.grad = torch.zeros_like(p)
        state.optim.step()

    render_ms, prior_ms = timed(render_fwd_bwd, repeats), timed(prior_cfg_forward, repeats)
    return {
        "render fwd+bwd": render_ms,
        "prior CFG forward": prior_ms,
        "SDS arithmetic": max(timed(sds_total, repeats) - prior_ms, 0.0),
        "optimiser": timed(optimiser, repeats),
    }


def step_ms(cfg: TrialConfig, prior: Prior, steps: int) -> float:
    state, step = TrialState(cfg, prior.device), SDSStep(cfg, prior)
    step(state)  # warm-up
    return timed(lambda: step(state), steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prior", default="auto", help="auto: toyworld when its weights are installed, else analytic")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a sweep trial gets its cpu resource)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = {"prompt": "a blue cone", "render": {"shading": {"albedo": 0, "lambertian": 1, "textureless": 0}}}
    if args.prior != "auto":
        base["prior"] = args.prior
    cfg = build_trial_config(apply_overrides(base, args.overrides), "--set")
    if args.prior == "auto":
        cfg = cfg.model_copy(update={"prior": cfg.prior.model_copy(update={"kind": default_cpu_prior()})})
    prior = load_prior(cfg.prior, cfg.device)
    phases = phase_times(cfg, prior, args.steps)
    sds_step = step_ms(cfg, prior, args.steps)
    jac_cfg = cfg.model_copy(update={"sds": cfg.sds.model_copy(update={"jacobian": True})})
    jac_step = step_ms(jac_cfg, prior, args.steps)
    floor = phases["render fwd+bwd"] + phases["prior CFG forward"]

    print(f"prior: {prior.describe()}")
    print(
        f"nerf {cfg.nerf.size}, {cfg.render.resolution}px, {cfg.render.views_per_step} views/step, "
        f"{cfg.render.samples_per_ray} samples/ray, {torch.get_num_threads()} thread(s), median of {args.steps}"
    )
    print(f"{'phase':22s} {'ms':>8s}")
    for name, ms in phases.items():
        print(f"{name:22s} {ms:8.1f}")
    print(f"{'floor (render+prior)':22s} {floor:8.1f}")
    print(f"{'SDS step':22s} {sds_step:8.1f}")
    print(f"{'Jacobian step':22s} {jac_step:8.1f}")
    print(
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
        + (f", CUDA peak {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if torch.cuda.is_available() else "")
    )
    print(f"step_over_floor={sds_step / floor:.3f} jacobian_over_sds={jac_step / sds_step:.3f} step_ms={sds_step:.1f}")


def default_cpu_prior() -> str:
    from dreamfusion.config.schema import PriorConfig

    return PriorConfig().kind


if __name__ == "__main__":
    main()
