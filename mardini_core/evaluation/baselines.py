"""Training-free baselines the model is compared with: linear blending, DIS optical flow, a still frame.

Each interpolation baseline maps the two end frames (H, W, 3) float RGB in [0, 1] to a clip of
`frames` frames (frames, H, W, 3) with the ends in place, frame i at time t = i / (frames - 1).

DIS flow interpolation: OpenCV's DIS optical flow (medium preset) on the grey frames gives the
forward flow F01 (frame 0 -> 1) and the backward flow F10. The flows from time t back to each end
are approximated as in Super SloMo (Jiang et al., 2018), exact for motion at constant velocity:
    F_t0 = -(1 - t) t F01 + t^2 F10,    F_t1 = (1 - t)^2 F01 - t (1 - t) F10.
Each end is backward-warped to time t with cv2.remap (bilinear, border replicated) and the two
warps are blended with weights (1 - t) and t. No occlusion reasoning: that is what learned
interpolators (RIFE, FILM) add on top.
"""
from __future__ import annotations

import cv2
import numpy as np


def times(frames: int) -> np.ndarray:
    """(frames,) evenly spaced times from 0 (first end) to 1 (last end)."""
    return np.linspace(0.0, 1.0, frames)


def linear_blend(first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
    """Cross-fade: frame at time t = (1 - t) first + t last. -> (frames, H, W, 3)."""
    t = times(frames)[:, None, None, None]
    return ((1 - t) * first[None] + t * last[None]).astype(np.float32)


def repeat_first(first: np.ndarray, frames: int) -> np.ndarray:
    """Image-to-video baseline: the given frame held still. -> (frames, H, W, 3)."""
    return np.repeat(first[None].astype(np.float32), frames, axis=0)


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from frame a to frame b: (H, W, 2) with a(x) ~ b(x + flow(x))."""
    grey = [cv2.cvtColor((f * 255 + 0.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in (a, b)]
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """out(x) = image(x + flow(x)), bilinear, borders replicated. image (H, W, 3), flow (H, W, 2)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w), np.arange(h))
    map_x, map_y = (gx + flow[..., 0]).astype(np.float32), (gy + flow[..., 1]).astype(np.float32)
    return cv2.remap(image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def dis_flow_interpolate(first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
    """Flow-based interpolation (see the module docstring). -> (frames, H, W, 3)."""
    f01, f10 = dis_flow(first, last), dis_flow(last, first)
    out = []
    for t in times(frames):
        f_t0 = -(1 - t) * t * f01 + t * t * f10
        f_t1 = (1 - t) ** 2 * f01 - t * (1 - t) * f10
        out.append((1 - t) * backward_warp(first, f_t0) + t * backward_warp(last, f_t1))
    clip = np.stack(out).clip(0, 1).astype(np.float32)
    clip[0], clip[-1] = first, last  # the given ends exactly, as every method returns them
    return clip
