"""ComfyUI's INTERP_MODEL (core "Load Frame Interpolation Model": RIFE or FILM) as MarDini's anchor interpolator.

The model is a ModelPatcher whose network takes (B, 3, H, W) frames in 0..1 padded to `pad_align`,
`extract_features(frame)` for a feature cache, and either `forward_multi_timestep(img0, img1, times,
cache=...)` or `forward(img0, img1, timestep=(B, 1, H, W), cache=...)`; both are used as core's
"Run Frame Interpolation Model" uses them, so any checkpoint core loads is an anchor here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from mardini_core.interpolation.rife import to_batch

from . import comfy_bridge


class ComfyInterpolator:
    def __init__(self, patcher):
        self.patcher, self.name = patcher, "INTERP_MODEL"

    def pair(self, first: np.ndarray, last: np.ndarray) -> "ComfyPair":
        comfy_bridge.load_on_device(self.patcher)
        return ComfyPair(self.patcher, first, last)


class ComfyPair:
    def __init__(self, patcher, first: np.ndarray, last: np.ndarray):
        self.net, self.size = patcher.model, first.shape[:2]
        device, dtype, align = patcher.load_device, patcher.model_dtype(), getattr(self.net, "pad_align", 1)
        self.img0, self.img1 = (to_batch(x, device, dtype, align) for x in (first, last))
        extract = getattr(self.net, "extract_features", None)
        with torch.no_grad():
            self.cache = {"img0": extract(self.img0), "img1": extract(self.img1)} if extract is not None else {}

    @torch.no_grad()
    def at(self, times: Sequence[float]) -> np.ndarray:
        h, w = self.size
        times = [float(t) for t in times]
        multi = getattr(self.net, "forward_multi_timestep", None)
        if multi is not None:
            out = multi(self.img0, self.img1, times, cache=self.cache)
        else:
            n, (ph, pw) = len(times), self.img0.shape[-2:]
            t = torch.tensor(times, device=self.img0.device, dtype=self.img0.dtype).view(n, 1, 1, 1).expand(n, 1, ph, pw)
            expand = lambda x: x.expand(n, -1, -1, -1)  # noqa: E731
            out = self.net(expand(self.img0), expand(self.img1), timestep=t, cache=self.cache)
        return out[:, :3, :h, :w].float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
