"""Train the toy world's models from scratch: data → tiny CLIP → tiny pixel UNet, then export in diffusers format.

Read top to bottom: `train_all` renders (or reloads) the data, trains the CLIP contrastively for a fixed number of
steps, trains the UNet on the frozen CLIP text encoder's states until the time budget is spent, and exports
    <out>/weights/{unet, scheduler, text_encoder, tokenizer, clip}
which `dreamfusion.toyworld.prior` loads with `from_pretrained(local path)`. Everything is seeded; the UNet's
length is set by wall-clock time (the budget), so its step count depends on the machine.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from dreamfusion.nerf.cameras import VIEW_SUFFIXES
from dreamfusion.toyworld import world
from dreamfusion.toyworld.data import WorldData, colour_unspecified, load_or_generate
from dreamfusion.toyworld.models import (
    IMAGE_MEAN,
    IMAGE_STD,
    clip_config,
    make_scheduler,
    new_unet,
    text_encoder_from_clip,
    to_clip_pixels,
    tokenize,
    write_tokenizer,
)
from dreamfusion.toyworld.world import strip_view, view_of


@dataclass
class TrainConfig:
    seed: int = 0
    """Seeds data rendering, initialisation, batches and noise."""
    minutes: float = 180.0
    """Wall-clock budget of the whole run (data, CLIP, UNet, export); the UNet gets whatever is left. The shipped
    weights had 180 minutes on 2 threads."""
    resolution: int = 32
    """Image side: 32 px is what trials render by default, and 64 px renders cost 7.5× more (measured)."""
    colour_views: int = 100
    """Training renders per colour prompt (36 prompts)."""
    spot_views: int = 100
    """Training renders per spotted prompt ("a red cube with a spot", 36 prompts)."""
    shape_views: int = 200
    """Training renders per shape-only textureless prompt (6 prompts)."""
    front_bias: float = 0.8
    """Share of the training views of an object with a front that look at it head-on (|azimuth| ≤ 15°), the rest
    uniform: the bias of photographs towards an object's front, which makes the Janus problem appear
    (`world.world_cameras`)."""
    bias_all: bool = False
    """Bias the views of every object, not only of those with a front. The first retrain did (front bias 0.8):
    a pyramid or cube was then seen within 15° of a diagonal in 7% of its renders against a third of a trial's
    uniform views, the suspected reason its pyramids missed the quality targets."""
    any_colour_fraction: float = 0.15
    """Share of the colour renders captioned without their colour ("a coloured cube"): six colours equally."""
    clip_steps: int = 800
    """Contrastive steps of the tiny CLIP."""
    clip_batch: int = 128
    clip_lr: float = 1e-3
    suffix_fraction_clip: float = 0.3
    """Fraction of CLIP captions carrying their camera's view suffix (", front view")."""
    unet_batch: int = 48
    unet_lr: float = 6e-4
    unet_max_steps: int | None = None
    """Stop the UNet here even if time is left (quick checks); None: train until the budget is spent."""
    suffix_fraction_unet: float = 0.6
    """Trials append view suffixes by default, so most UNet captions carry one."""
    cond_dropout: float = 0.2
    """Classifier-free guidance: probability of the empty caption."""
    ema_decay: float = 0.995
    checkpoint_minutes: float = 5.0
    """Write a resumable UNet checkpoint this often."""
    reserve_minutes: float = 2.0
    """Budget kept back for the export and the final check."""


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer and model configs


def random_hflip(images: Tensor, g: torch.Generator) -> Tensor:
    """Mirror half the batch: every world shape is mirror-symmetric, so a mirrored render is a valid render."""
    flip = torch.rand(images.shape[0], generator=g) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def random_suffixes(n: int, fraction: float, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g) < fraction  # [n] bool


def describes(captions: list[str], data: WorldData, index: Tensor) -> Tensor:
    """[U, B] bool: whether caption u is a true caption of image b: its prompt or, for a colour render, the
    colour-unspecified form of it, with no view suffix or its own view's."""
    rows = []
    for caption in captions:
        base, view = strip_view(caption), view_of(caption)
        rows.append(
            [
                base in (prompt, colour_unspecified(prompt)) and view in (None, label)
                for prompt, label in zip(data.prompts_of(index), data.labels_of(index))
            ]
        )
    return torch.tensor(rows)


# ---------------------------------------------------------------------------------------------------------------
# CLIP


def train_clip(cfg: TrainConfig, data: WorldData, folder: Path, log: Callable[[str], None]):
    """Contrastive training with de-duplicated captions: each image's positive is its caption among the batch's
    distinct captions (several images may share one), and each caption's positives are all its images."""
    from transformers import CLIPModel

    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed + 1)
    tokenizer = write_tokenizer(folder)
    model = CLIPModel(clip_config(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.clip_lr, weight_decay=0.05)
    started = time.perf_counter()
    for step in range(1, cfg.clip_steps + 1):
        lr = cfg.clip_lr * min(1.0, step / 50) * 0.5 * (1 + math.cos(math.pi * step / cfg.clip_steps))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(data), (cfg.clip_batch,), generator=g)
        images = random_hflip(data.float_images(idx), g)
        suffixes = random_suffixes(len(idx), cfg.suffix_fraction_clip, g)
        captions = data.captions(idx, suffixes, random_suffixes(len(idx), cfg.any_colour_fraction, g))
        unique = list(dict.fromkeys(captions))
        target = torch.tensor([unique.index(c) for c in captions])  # [B] index of each image's caption
        img = F.normalize(model.get_image_features(pixel_values=to_clip_pixels(images)).pooler_output, dim=-1)
        txt = F.normalize(model.get_text_features(input_ids=tokenize(tokenizer, unique)).pooler_output, dim=-1)
        logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T  # [B, U]
        positives = describes(unique, data, idx).float()  # [U, B]: every true caption counts, not only its own
        loss_img = -(logits.log_softmax(-1) * positives.T / positives.T.sum(-1, keepdim=True)).sum(-1).mean()
        loss_txt = -(logits.T.log_softmax(-1) * positives / positives.sum(-1, keepdim=True)).sum(-1).mean()
        loss = (loss_img + loss_txt) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == cfg.clip_steps:
            acc = float((logits.argmax(-1) == target).float().mean())
            elapsed = time.perf_counter() - started
            eta = elapsed / step * (cfg.clip_steps - step)
            log(
                f"  clip step {step}/{cfg.clip_steps}  loss {loss.item():.3f}  batch acc {acc:.2f}  "
                f"[{elapsed:.0f}s, ETA {eta:.0f}s]"
            )
    model.eval()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "CLIPImageProcessor",
                "image_mean": list(IMAGE_MEAN),
                "image_std": list(IMAGE_STD),
                "size": {"shortest_edge": 32},
                "crop_size": {"height": 32, "width": 32},
            },
            indent=2,
        )
    )
    return model, tokenizer


# ---------------------------------------------------------------------------------------------------------------
# UNet


class CaptionTable:
    """Frozen text-encoder states of every caption the UNet can see (each world prompt × {no suffix, 4 views},
    and "")."""

    def __init__(self, encoder, tokenizer, prompts: list[str]) -> None:
        self.captions = [""] + [p + s for p in prompts for s in ("", *VIEW_SUFFIXES.values())]
        self.index = {c: i for i, c in enumerate(self.captions)}
        with torch.no_grad():
            self.states = encoder(input_ids=tokenize(tokenizer, self.captions)).last_hidden_state  # [C, 16, D]

    def lookup(self, captions: list[str]) -> Tensor:
        return self.states[torch.tensor([self.index[c] for c in captions])]  # [B, 16, D]


def train_unet(
    cfg: TrainConfig,
    data: WorldData,
    table: CaptionTable,
    folder: Path,
    seconds: float,
    log: Callable[[str], None],
    resume: bool,
) -> tuple[torch.nn.Module, dict]:
    """ε-prediction MSE at uniform t, classifier-free dropout, EMA; stops when `seconds` of training are spent."""
    torch.manual_seed(cfg.seed + 2)
    unet = new_unet(table.states.shape[-1], cfg.resolution)
    ema = new_unet(table.states.shape[-1], cfg.resolution)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.unet_lr, weight_decay=0.0)
    scheduler = make_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod.float()  # [T]
    g = torch.Generator().manual_seed(cfg.seed + 3)
    state: dict[str, Any] = {"step": 0, "seconds": 0.0, "loss": None}
    ckpt_path = folder / "checkpoint.pt"
    if resume and ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False)
        unet.load_state_dict(ckpt["unet"])
        ema.load_state_dict(ckpt["ema"])
        opt.load_state_dict(ckpt["opt"])
        g.set_state(ckpt["generator"])
        state = ckpt["state"]
        log(f"  unet: resumed at step {state['step']} ({state['seconds'] / 60:.1f} min trained)")
    log(f"  unet: {sum(p.numel() for p in unet.parameters()) / 1e6:.2f}M params, budget {seconds / 60:.1f} min")
    last_ckpt = time.perf_counter()
    while state["seconds"] < seconds and (cfg.unet_max_steps is None or state["step"] < cfg.unet_max_steps):
        tick = time.perf_counter()
        step = state["step"] + 1
        progress = min(1.0, state["seconds"] / seconds)
        lr = cfg.unet_lr * min(1.0, step / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.randint(len(data), (cfg.unet_batch,), generator=g)
        x0 = random_hflip(data.float_images(idx), g) * 2 - 1  # [B, 3, H, W] in [-1, 1]
        suffixes = random_suffixes(len(idx), cfg.suffix_fraction_unet, g)
        captions = data.captions(idx, suffixes, random_suffixes(len(idx), cfg.any_colour_fraction, g))
        drop = torch.rand(len(idx), generator=g) < cfg.cond_dropout
        captions = ["" if d else c for c, d in zip(captions, drop.tolist())]
        t = torch.randint(0, len(alphas_cumprod), (len(idx),), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        ab = alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        pred = unet(x_t, t, encoder_hidden_states=table.lookup(captions)).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), unet.parameters()):
                pe.lerp_(p, 1 - decay)
        state["step"] = step
        state["seconds"] += time.perf_counter() - tick
        state["loss"] = loss.item() if state["loss"] is None else 0.98 * state["loss"] + 0.02 * loss.item()
        if step % 25 == 0:
            rate = step / state["seconds"]
            eta = max(0.0, seconds - state["seconds"])
            log(
                f"  unet step {step}  loss {state['loss']:.4f}  lr {lr:.1e}  {rate:.2f} steps/s  "
                f"[{state['seconds'] / 60:.1f} min, ETA {eta / 60:.1f} min]"
            )
        if time.perf_counter() - last_ckpt > cfg.checkpoint_minutes * 60:
            save_unet_checkpoint(ckpt_path, unet, ema, opt, g, state)
            last_ckpt = time.perf_counter()
    save_unet_checkpoint(ckpt_path, unet, ema, opt, g, state)
    return ema.eval(), state


def save_unet_checkpoint(path: Path, unet, ema, opt, g: torch.Generator, state: dict) -> None:
    """Written to a temporary file first, so a kill mid-write never leaves a broken checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "unet": unet.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "generator": g.get_state(),
            "state": dict(state),
        },
        tmp,
    )
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------
# Export and the whole run


def export(weights: Path, clip_folder: Path, clip, tokenizer, unet) -> None:
    """The diffusers/transformers layout the toy-world prior and scorer load from."""
    if weights.exists():
        shutil.rmtree(weights)
    unet.save_pretrained(weights / "unet")
    make_scheduler().save_pretrained(weights / "scheduler")
    text_encoder_from_clip(clip).save_pretrained(weights / "text_encoder")
    tokenizer.save_pretrained(weights / "tokenizer")
    shutil.copytree(clip_folder, weights / "clip")


def train_all(cfg: TrainConfig, out: Path, resume: bool = False, log: Callable[[str], None] = print) -> Path:
    """Data, CLIP, UNet, export; returns the exported weights folder `<out>/weights`."""
    from transformers import CLIPModel, CLIPTokenizer

    out.mkdir(parents=True, exist_ok=True)
    run_state_path = out / "run_state.json"
    run = json.loads(run_state_path.read_text()) if resume and run_state_path.exists() else {"seconds": 0.0}
    if not resume and (out / "unet" / "checkpoint.pt").exists():
        raise FileExistsError(f"{out} already holds a training run: pass --resume, or choose a fresh --out")
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    budget = cfg.minutes * 60
    started = [time.perf_counter() - run["seconds"]]  # as if the run had never been stopped

    def spent() -> float:
        return time.perf_counter() - started[0]

    def save_run_state(**extra) -> None:
        run.update(extra, seconds=spent())
        run_state_path.write_text(json.dumps(run, indent=2))

    finish = time.strftime("%H:%M", time.localtime(time.time() + budget - run["seconds"]))
    log(
        f"budget {cfg.minutes:.0f} min (data, CLIP, then the UNet until ~{cfg.reserve_minutes:.0f} min before the "
        f"end): finishes around {finish}"
    )
    log(
        f"[1/4] data: {cfg.colour_views} views × 36 colour prompts + {cfg.spot_views} × 36 spotted + "
        f"{cfg.shape_views} × 6 shape prompts at {cfg.resolution}px, front bias {cfg.front_bias} "
        f"{'on every object' if cfg.bias_all else 'on the spotted objects'} "
        f"(cached in {out / 'data'})"
    )
    views = f"{cfg.colour_views}x{cfg.spot_views}x{cfg.shape_views}"
    bias = f"bias{cfg.front_bias}" + ("" if cfg.bias_all else "-fronted")
    data_path = out / "data" / f"train_seed{cfg.seed}_{views}_{bias}_{cfg.resolution}px.pt"
    data = load_or_generate(
        data_path,
        log=log,
        seed=cfg.seed,
        colour_views=cfg.colour_views,
        shape_views=cfg.shape_views,
        spot_views=cfg.spot_views,
        resolution=cfg.resolution,
        front_bias=cfg.front_bias,
        bias_all=cfg.bias_all,
    )
    log(f"  {len(data)} images [{spent():.0f}s]")
    save_run_state(data_seconds=run.get("data_seconds", spent()))

    clip_folder = out / "clip"
    if resume and (clip_folder / "model.safetensors").exists():
        log("[2/4] clip: trained already, loading")
        clip, tokenizer = CLIPModel.from_pretrained(clip_folder).eval(), CLIPTokenizer.from_pretrained(clip_folder)
    else:
        log(f"[2/4] clip: {cfg.clip_steps} contrastive steps, batch {cfg.clip_batch}")
        mark = spent()
        clip, tokenizer = train_clip(cfg, data, clip_folder, log)
        save_run_state(clip_seconds=spent() - mark)
    clip.requires_grad_(False)

    if "before_unet" not in run:  # data + CLIP time, fixed once so a resumed UNet keeps its total budget
        save_run_state(before_unet=spent())
    unet_seconds = budget - run["before_unet"] - cfg.reserve_minutes * 60  # the UNet's total, over all resumes
    log(f"[3/4] unet: training for {max(unet_seconds, 0) / 60:.1f} min in all on the frozen CLIP text encoder")
    table = CaptionTable(text_encoder_from_clip(clip), tokenizer, world.all_prompts())
    unet, unet_state = train_unet(cfg, data, table, out / "unet", unet_seconds, log, resume)
    # the UNet's time before a resume is in its checkpoint, not in the run state saved before the UNet began
    started[0] = time.perf_counter() - run["before_unet"] - unet_state["seconds"]
    save_run_state(unet_steps=unet_state["step"], unet_seconds=unet_state["seconds"], unet_loss=unet_state["loss"])

    log("[4/4] export")
    weights = out / "weights"
    export(weights, clip_folder, clip, tokenizer, unet)
    save_run_state(finished=True)
    (weights / "training.json").write_text(json.dumps({"config": asdict(cfg), "run": run}, indent=2))
    log(f"done in {spent() / 60:.1f} min: {weights}")
    return weights
