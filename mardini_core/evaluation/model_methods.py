"""MarDini as an evaluated method: the generation pipeline behind the protocol's numpy interface.

Sampling follows the paper's inference settings (Appendix B, `pipeline.default_guidance`): DDIM, no
classifier-free guidance for interpolation (redundant with two references), 2.5 for image-to-video.
"""
from __future__ import annotations

import numpy as np
import torch

from .. import masks
from ..pipeline import default_guidance, generate, images_from_hwc
from .protocol import Animator, Interpolator


def _run(model, vae, images: np.ndarray, mask: masks.FrameMask, steps: int, seed: int, restore_detail: bool) -> np.ndarray:
    """images (S, H, W, 3) for the mask's given frames -> the clip (K, H, W, 3)."""
    with torch.inference_mode():
        out = generate(model, vae, images_from_hwc(images), mask, steps=steps, guidance=default_guidance(mask), seed=seed,
                       restore_detail=restore_detail)
    return out.frames.permute(0, 2, 3, 1).numpy()


def mardini_methods(model, vae, steps: int, seed: int, restore_detail: bool = True) -> tuple[Interpolator, Animator]:
    """The model's interpolation and image-to-video methods, seeded identically on every clip."""

    def interpolate(first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
        return _run(model, vae, np.stack([first, last]), masks.interpolation(frames), steps, seed, restore_detail)

    def animate(first: np.ndarray, frames: int) -> np.ndarray:
        return _run(model, vae, first[None], masks.image_to_video(frames), steps, seed, restore_detail)

    return interpolate, animate
