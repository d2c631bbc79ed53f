"""Reconstruction quality of an autoencoder on real frames: PSNR of decode(encode(x)) against x."""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import torch
from einops import rearrange

from ..data.clips import resize_crop
from ..data.sources import find_segments
from ..data.frames import frame_size
from ..data.video import read_indices
from ..memory import check_fits, vae_bytes


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images (N, 3, H, W) in [0, 1]."""
    mse = (a.float() - b.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(mse)


def reconstruction_psnr(vae, images: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR of the VAE's round trip; images (N, 3, H, W) in [0, 1], sides multiples of 8."""
    return psnr(vae.decode(vae.encode(images)), images)


def psnr_bytes(files, size: int, vae_width: int = 64) -> int:
    """A rough upper estimate of scoring autoencoders on `files` ((picked frames, (height, width)) per video):
    one video's picks decoded at their own size (twice: decoded and stacked), every pick kept at size x size
    (uint8 and float), one video's round trip (its frames three times in float) and the VAE's widest
    activations for a batch of 4."""
    files = list(files)
    square = size * size * 3
    one_video = max((n * h * w * 3 * 2 + n * square * 4 * 3 for n, (h, w) in files), default=0)
    return one_video + sum(n for n, _ in files) * square * 5 + vae_bytes(4, size, size, vae_width)


def evaluation_frames(paths: Iterable[str | os.PathLike], per_segment: int = 4, size: int = 256) -> dict[str, torch.Tensor]:
    """Evenly spaced frames of every readable segment, center-cropped to size x size -> {file name: (N, 3, size, size)}."""
    picks: dict = {}
    for seg in find_segments(paths)[0]:
        spread = np.linspace(0, seg.frames - 1, per_segment + 2)[1:-1].round().astype(int)
        picks.setdefault(seg.path, []).extend(seg.start + int(p) for p in spread)
    check_fits(psnr_bytes([(len(idx), frame_size(path)) for path, idx in picks.items()], size),
               f"{sum(map(len, picks.values()))} frames at {size}x{size} from {len(picks)} video(s)", "lower --per-segment or --size, or give fewer videos")
    by_file = {path.name: resize_crop(read_indices(path, idx), size, size, (0.5, 0.5)) for path, idx in picks.items()}
    return {name: rearrange(torch.from_numpy(np.stack(f)), "n h w c -> n c h w").float() / 255 for name, f in by_file.items()}


class Crossed:
    """Encode with one autoencoder, decode with another: scores how well two share one latent space."""

    def __init__(self, encoder, decoder):
        self.encoder, self.decoder = encoder, decoder

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.encode(images)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(latents)


def psnr_table(vaes: dict[str, object], frames: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """{vae name: {file name: mean PSNR, ..., "mean": mean over all frames}}."""
    table = {}
    for name, vae in vaes.items():
        scores = {f: reconstruction_psnr(vae, x) for f, x in frames.items()}
        row = {f: round(float(s.mean()), 2) for f, s in scores.items()}
        row["mean"] = round(float(torch.cat(list(scores.values())).mean()), 2)
        table[name] = row
    return table
