"""The one place a window's anchor pixels are built: every generated frame from the given frames beside it.

Generate, long video, the Smoother, the ComfyUI nodes, the eval's baselines and training's frames
loader all call `anchor_frames` with the interpolator they were given, so each anchor is the same
function of the same frames wherever it is made.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np


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
    interpolator's frames at their times, one `pair` per gap and one `at` call for all its frames; a
    frame with a given frame on one side only is that frame. Raises ValueError when no frame is given.
    """
    positions = [k for k, g in enumerate(given) if g]
    if not positions:
        raise ValueError("an anchor needs at least one given frame")
    out = frames.astype(np.float32).copy()
    gaps: dict[tuple[int, int], list[int]] = {}
    for k, g in enumerate(given):
        if g:
            continue
        left = max((p for p in positions if p < k), default=None)
        right = min((p for p in positions if p > k), default=None)
        if left is None or right is None:
            out[k] = out[right if left is None else left]
        else:
            gaps.setdefault((left, right), []).append(k)
    for (left, right), inside in gaps.items():
        out[inside] = interpolator.pair(out[left], out[right]).at([(k - left) / (right - left) for k in inside])
    return out
