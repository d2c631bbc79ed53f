"""Training-free baselines the model is compared with: linear blending, DIS optical flow, a still frame.

Each interpolation baseline maps the two end frames (H, W, 3) float RGB in [0, 1] to a clip of
`frames` frames (frames, H, W, 3) with the ends in place, frame i at time t = i / (frames - 1).

DIS flow interpolation: the flow anchor of flow-anchored models (flow.py) with nothing added, so
a flow-anchored MarDini whose residual is zero scores exactly this.
"""
from __future__ import annotations

import numpy as np

from ..flow import flow_frames


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


def dis_flow_interpolate(first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
    """Flow-based interpolation (flow.py). -> (frames, H, W, 3)."""
    clip = np.zeros((frames, *first.shape), np.float32)
    clip[0], clip[-1] = first, last
    return flow_frames(clip, [True] + [False] * (frames - 2) + [True])
