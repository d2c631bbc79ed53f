"""MarDini as an evaluated method: the generation pipeline behind the protocol's numpy interface.

Sampling follows the paper's inference settings (Appendix B): DDIM, no classifier-free guidance for
interpolation (redundant with two references), 2.5 for image-to-video; guidance and fidelity None are
the model's own defaults for the mask (`generation.resolve`), what `generate` and the nodes use.
The last generation of each task is kept in `MardiniMethods.last` so the evaluation can score its residual.
The smoother task runs the Smoother node's schedule (mardini_core.generation.long_video) with its settings.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .. import masks
from ..generation import Generation, Sampling, generate, images_from_hwc, run_schedule, schedule_windows
from ..interpolation import Interpolator


class MardiniMethods:
    """The model's interpolation and image-to-video methods, seeded identically on every clip."""

    def __init__(self, model, vae, steps: int, seed: int, restore_detail: bool = True, fidelity: float | None = None,
                 sampler: str = "ddim", interpolator: Interpolator | None = None):
        self.model, self.vae = model, vae
        self.sampling = Sampling(steps=steps, seed=seed, fidelity=fidelity, sampler=sampler)
        self.settings = dict(restore_detail=restore_detail, interpolator=interpolator)
        self.last: dict[str, Generation] = {}  # task ("interpolation", "i2v") -> its last generation

    def _run(self, task: str, images: np.ndarray, mask: masks.FrameMask) -> np.ndarray:
        """images (S, H, W, 3) for the mask's given frames -> the clip (K, H, W, 3)."""
        with torch.inference_mode():
            self.last[task] = generate(self.model, self.vae, images_from_hwc(images), mask, self.sampling, **self.settings)
        return self.last[task].frames.permute(0, 2, 3, 1).numpy()

    def interpolate(self, first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
        return self._run("interpolation", np.stack([first, last]), masks.interpolation(frames))

    def animate(self, first: np.ndarray, frames: int) -> np.ndarray:
        return self._run("i2v", first[None], masks.image_to_video(frames))

    def expand(self, given: np.ndarray, frames: int) -> np.ndarray:
        return self._run("expansion", given, masks.expansion(frames, len(given)))

    def smooth(self, given: np.ndarray) -> np.ndarray:
        """given (N, H, W, 3) -> (2N - 1, H, W, 3): a frame made between every two, as the Smoother node's x2."""
        total = 2 * len(given) - 1
        schedule = schedule_windows(total, list(range(0, total, 2)), self.model.config.max_frames)
        with torch.inference_mode():
            frames = run_schedule(schedule, self.model, self.vae, images_from_hwc(given),
                                  dataclasses.replace(self.sampling, guidance=1.0), **self.settings)
        return frames.permute(0, 2, 3, 1).numpy()
