"""The one place a window's anchor pixels are built: every generated frame from the given frames beside it.

Generate, long video, the Smoother, the ComfyUI nodes, the eval's baselines and training's frames
loader all call `anchor_frames` with the interpolator they were given, so each anchor is the same
function of the same frames wherever it is made.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .dis import continued


class Pair(Protocol):
    def at(self, times: Sequence[float]) -> np.ndarray:
        """The frames at `times` in [0, 1] (0 = the first frame) -> (T, H, W, 3) float32 in [0, 1]."""


class Interpolator(Protocol):
    """Makes frames between two given frames; what a pair needs (flows, features) is computed once in `pair`."""

    name: str

    def pair(self, first: np.ndarray, last: np.ndarray) -> Pair:
        """first, last (H, W, 3) float in [0, 1]."""


def anchor_frames(frames: np.ndarray, given: Sequence[bool], interpolator: Interpolator) -> np.ndarray:
    """frames (K, H, W, 3) float in [0, 1] with the given frames in place -> (K, H, W, 3) float32 anchors.

    A given frame is its own anchor; the generated frames between two given frames are the
    interpolator's frames at their times, one `pair` per gap and one `at` call for all its frames.
    Frames past the last given frame (or before the first) continue the motion of the two given frames
    nearest them at constant velocity (`dis.continued`: a still copy would anchor a still picture, and
    a small model's residual does not add the missing motion); with one given frame on that side they
    are a copy of it. Raises ValueError when no frame is given.
    """
    positions = [k for k, g in enumerate(given) if g]
    if not positions:
        raise ValueError("an anchor needs at least one given frame")
    out = frames.astype(np.float32).copy()
    for left, right in zip(positions, positions[1:]):
        inside = list(range(left + 1, right))
        if inside:
            out[inside] = interpolator.pair(out[left], out[right]).at([(k - left) / (right - left) for k in inside])
    first, last = positions[0], positions[-1]
    second, penultimate = (positions[1], positions[-2]) if len(positions) > 1 else (first, last)
    for outside, edge, inner in ((range(last + 1, len(given)), last, penultimate), (range(first), first, second)):
        if not outside:
            continue
        if edge == inner:  # one given frame: nothing to continue
            out[list(outside)] = out[edge]
        else:
            out[list(outside)] = continued(out[edge], out[inner], abs(edge - inner), [abs(k - edge) for k in outside])
    return out
