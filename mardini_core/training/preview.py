"""Preview samples during training: the generation pipeline's DDIM on one clip, saved as a PNG strip
(all frames, clip over sample) and a GIF (clip beside sample, frame by frame)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from einops import rearrange

from .. import opencv_paths
from ..atomic import atomic_path
from ..generation.latents import decode_frames
from ..generation.sampler import denoise
from ..generation.settings import Resolved
from ..video_io import write_frames


@torch.no_grad()
def write_preview(path: Path, model, vae, high: torch.Tensor, low: torch.Tensor, masked: torch.Tensor, planned: bool, steps: int, write: bool) -> None:
    """high (1, K, C, H, W), low (1, K, C, h, w) model-space; masked (1, K). Top row: the clip; bottom: the sample.

    Every rank runs the model (sharded networks need all ranks); only `write` ranks save.
    planned=False samples with Z_uncond, as the generator is trained alone in stage 1. The sampler's kernel
    runs on the clip as the trainer masked it (a training mask may give no frame, which no window stage takes).
    """
    signal = model.planner(low, masked) if planned else None
    z = denoise(model, high, masked, signal, Resolved(steps=steps), generator=torch.Generator().manual_seed(0))
    if not write:
        return
    rows = torch.stack([decode_frames(vae, high[0].float(), model.config), decode_frames(vae, z[0].float(), model.config)])
    rows[1, ~masked[0].cpu()] *= 0.6  # dim the reference frames in the sample row
    image = (rearrange(rows, "r k c h w -> (r h) (k w) c").cpu().numpy() * 255).round().astype(np.uint8)
    write_frames(rearrange(rows, "r k c h w -> k h (r w) c").cpu().numpy(), path.with_suffix(".gif"), fps=4, overwrite=True)
    with atomic_path(path, ".png") as tmp:
        opencv_paths.imwrite(tmp, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
