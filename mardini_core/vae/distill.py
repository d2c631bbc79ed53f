"""Distilling mardini-tae: a narrower autoencoder in TAEF2's 32-channel latent space.

The student's encoder regresses TAEF2's latents of real frames (MSE), and its decoder learns to turn
TAEF2's latents back into the frames (L1 on pixels: sharper than MSE). Both halves see the teacher's
latents, never each other's, so either half is interchangeable with TAEF2's and with FLUX.2's VAE in
ComfyUI. Training crops are small and the teacher encodes them once up front, so CPU training is
dominated by the student alone.
"""
from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ..data.clips import resize_crop
from ..data.sources import find_segments
from ..data.video import read_indices
from ..errors import ConfigError, InputError
from ..memory import check_fits
from ..schema import SEED_MAX, check_ranges, ranged
from ..training.optim import cosine_lr
from .autoencoder import TinyAutoencoder
from .loading import MARDINI_TAE
from .tiny import TinyAEConfig


@dataclass(frozen=True)
class DistillConfig:
    width: int = ranged(32, 8, 512)
    blocks: int = ranged(2, 1, 16)
    crop: int = ranged(64, 8, 4096)  # training crop side (pixels), a multiple of 8
    short_side: int = ranged(192, 8, 8192)  # frames are resized to this short side before cropping
    every: int = ranged(4, 1, 10_000)  # take every n-th frame of each training segment
    bank: int = ranged(2048, 1, 1 << 20)  # number of training crops (teacher latents computed once)
    steps: int = ranged(1500, 1, 10**9)
    batch: int = ranged(16, 1, 1 << 16)
    lr: float = ranged(2e-3, 0, 1, above=True)
    warmup: int = ranged(50, 0, 10**9)
    seed: int = ranged(0, 0, SEED_MAX)

    def __post_init__(self) -> None:
        check_ranges(self, "train-vae")
        if self.crop % 8:
            raise ConfigError(f"[train-vae] crop must be a multiple of 8 (the autoencoder's downscale), got {self.crop}")
        if self.short_side < self.crop:
            raise ConfigError(f"[train-vae] short_side ({self.short_side}) must be at least crop ({self.crop}): crops are cut from it")


def distill_bytes(cfg: DistillConfig, frames: int, latent_channels: int = 32) -> int:
    """A rough upper estimate of train-vae's peak: the frames read (uint8, short_side square), the crop bank
    and its latents (float32), and one training step of the student, encoder and decoder, whose activations
    at every level are kept for the backward pass (about 2 blocks + 4 of them a level, a third more for the
    smaller levels)."""
    bank = cfg.bank * (3 * cfg.crop**2 + latent_channels * (cfg.crop // 8) ** 2) * 4
    step = cfg.batch * cfg.crop**2 * cfg.width * 4 * (2 * cfg.blocks + 4) * 4 // 3 * 2
    return frames * cfg.short_side**2 * 3 + bank + step


def crop_bank(paths: Iterable[str | os.PathLike], cfg: DistillConfig, exclude: set[str]) -> torch.Tensor:
    """Random crops of real frames -> (bank, 3, crop, crop) float in [0, 1]; files named in `exclude` are left out.
    The whole run's memory is estimated from the segments' frame counts before any frame is read."""
    rng, paths = random.Random(cfg.seed), list(paths)
    segments = [seg for seg in find_segments(paths)[0] if seg.path.name not in exclude]
    read = sum(len(range(0, seg.frames, cfg.every)) for seg in segments)
    check_fits(distill_bytes(cfg, read), f"train-vae ({read} frames at {cfg.short_side}, a bank of {cfg.bank} crops of {cfg.crop}, "
               f"batches of {cfg.batch})", "lower --bank, --batch or --crop, raise --every, or give fewer videos")
    frames = []
    for seg in segments:
        picked = read_indices(seg.path, list(range(seg.start, seg.start + seg.frames, cfg.every)))
        frames += list(resize_crop(picked, cfg.short_side, cfg.short_side, (0.5, 0.5)))
    if not frames:
        raise InputError(f"no training frames in {', '.join(map(str, paths))} once {sorted(exclude)} are left out; give more videos")
    crops = []
    for _ in range(cfg.bank):
        frame = frames[rng.randrange(len(frames))]
        top, left = rng.randrange(frame.shape[0] - cfg.crop + 1), rng.randrange(frame.shape[1] - cfg.crop + 1)
        crops.append(frame[top : top + cfg.crop, left : left + cfg.crop])
    return rearrange(torch.from_numpy(np.stack(crops)), "n h w c -> n c h w").float() / 255


def distil(teacher: TinyAutoencoder, crops: torch.Tensor, cfg: DistillConfig, log=sys.stderr, student: TinyAutoencoder | None = None) -> TinyAutoencoder:
    """Train a student (new, or `student` to continue one) on `crops` (N, 3, c, c) against the teacher's latents."""
    torch.manual_seed(cfg.seed)
    if student is None:
        student = TinyAutoencoder(MARDINI_TAE, TinyAEConfig(teacher.latent_channels, cfg.width, cfg.blocks, mid_gn=True))
    student = student.float().train().requires_grad_(True)
    targets = teacher.encode(crops)  # (N, C, c/8, c/8), once
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    order = torch.Generator().manual_seed(cfg.seed)
    start = time.time()
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup)
        idx = torch.randint(len(crops), (cfg.batch,), generator=order)
        x, z = crops[idx], targets[idx]
        enc_loss = F.mse_loss(student.encoder(x), z)
        dec_loss = F.l1_loss(student.decoder(z), x)
        opt.zero_grad(set_to_none=True)
        (enc_loss + dec_loss).backward()
        opt.step()
        if step % 50 == 0 or step == cfg.steps - 1:
            rate = (step + 1) * cfg.batch / (time.time() - start)
            print(f"step {step}/{cfg.steps} latent mse {enc_loss.item():.4f} pixel l1 {dec_loss.item():.4f} ({rate:.0f} crops/s)", file=log, flush=True)
    return student.eval().requires_grad_(False)
