"""Training-free baselines the model is compared with: linear blending, the interpolators, a still frame.

Each interpolation baseline maps the two end frames (H, W, 3) float RGB in [0, 1] to a clip of
`frames` frames (frames, H, W, 3) with the ends in place, frame i at time t = i / (frames - 1).

An interpolator (DIS flow, RIFE 4.x, its ensemble) is scored through the same `anchor_frames` that makes a
flow-anchored model's anchor, so a MarDini whose residual is zero scores exactly its interpolator.
"""
from __future__ import annotations

import numpy as np

from ..interpolation import Dis, Interpolator, anchor_frames


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


def repeat_last(given: np.ndarray, frames: int) -> np.ndarray:
    """Expansion baseline: the given frames (G, H, W, 3), then the last of them held still. -> (frames, H, W, 3)."""
    return np.concatenate([given, np.repeat(given[-1:], frames - len(given), axis=0)]).astype(np.float32)


def continued_motion(given: np.ndarray, frames: int) -> np.ndarray:
    """Expansion baseline: the given frames' motion carried on (the anchor of an anchored model's expansion)."""
    clip = np.zeros((frames, *given.shape[1:]), np.float32)
    clip[: len(given)] = given
    return anchor_frames(clip, [k < len(given) for k in range(frames)], Dis())


def interpolated(interpolator: Interpolator):
    """The interpolator as an interpolation baseline: (first, last, frames) -> (frames, H, W, 3)."""
    def interpolate(first: np.ndarray, last: np.ndarray, frames: int) -> np.ndarray:
        clip = np.zeros((frames, *first.shape), np.float32)
        clip[0], clip[-1] = first, last
        return anchor_frames(clip, [True] + [False] * (frames - 2) + [True], interpolator)
    return interpolate
