"""DIS optical-flow interpolation: no weights, milliseconds a frame, and the DIS baseline of the eval.

For a frame at time t between two given frames I0 (t = 0) and I1 (t = 1), OpenCV's DIS optical flow
(medium preset) on the grey frames gives the forward flow F01 and the backward flow F10. The flows
from time t back to each end are approximated as in Super SloMo (Jiang et al., 2018), exact for
motion at constant velocity:
    F_t0 = -(1 - t) t F01 + t^2 F10,    F_t1 = (1 - t)^2 F01 - t (1 - t) F10.
Each end is backward-warped to time t (bilinear, borders replicated) and the two warps are blended
with weights (1 - t) and t.
No occlusion reasoning: weighting each warp by forward-backward flow consistency (Sundaram et al.
2010) measured 0.1-0.2 dB worse on the held-out clips, as DIS's flows are too noisy for the test.
What flow gets wrong (occlusions, non-linear motion) is left to the learned residual (anchor.py).
RIFE 4.x (rife.py) measures 1.4-1.9 dB better on held-out clips and is the default (README: Quality).
"""
from __future__ import annotations

import cv2
import numpy as np


DIS_MIN_SIDE = 12  # OpenCV's DIS needs a frame at least this wide or high


def dis_flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DIS optical flow from frame a to frame b, (H, W, 3) float in [0, 1] -> (H, W, 2), a(x) ~ b(x + flow(x))."""
    if max(a.shape[:2]) < DIS_MIN_SIDE:  # too small for DIS: no measurable motion
        return np.zeros((*a.shape[:2], 2), np.float32)
    grey = [cv2.cvtColor((f * 255 + 0.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in (a, b)]
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(grey[0], grey[1], None)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """out(x) = image(x + flow(x)), bilinear, borders replicated. image (H, W, C) or (H, W), flow (H, W, 2)."""
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image.astype(np.float32), gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def continued(last: np.ndarray, before: np.ndarray, steps: int, distances) -> np.ndarray:
    """The motion from `before` to `last` (given frames `steps` frames apart) carried on at constant velocity:
    the frames `distances` frames past `last` -> (D, H, W, 3) float32 in [0, 1]. With F the DIS flow from
    `last` to `before` (last(x) ~ before(x + F(x))), the frame d past `last` is last(x + F(x) d / steps):
    exact for a smooth motion field of constant velocity; what it cannot know (new content at the border,
    occlusions) is left to the learned residual. On the training split (expansion `xxx......`, short side
    256) it scored 27.17 dB against 25.19 for the last frame repeated and moved 0.86x as much as the true clips."""
    flow = dis_flow(last, before) / steps
    return np.stack([backward_warp(last.astype(np.float32), flow * d) for d in distances]).clip(0, 1)


class Dis:
    """The DIS interpolator (anchors.py's interface)."""

    name = "dis"

    def pair(self, first: np.ndarray, last: np.ndarray) -> "FlowPair":
        return FlowPair(first, last)


class FlowPair:
    """The flows between two given frames, computed once and reused for every time between them."""

    def __init__(self, first: np.ndarray, last: np.ndarray):
        self.first, self.last = first.astype(np.float32), last.astype(np.float32)
        self.f01, self.f10 = dis_flow(first, last), dis_flow(last, first)

    def at(self, times) -> np.ndarray:
        """The frames at `times` in [0, 1] -> (T, H, W, 3) float32 in [0, 1]."""
        return np.stack([self.one(float(t)) for t in times])

    def one(self, t: float) -> np.ndarray:
        f_t0 = -(1 - t) * t * self.f01 + t * t * self.f10
        f_t1 = (1 - t) ** 2 * self.f01 - t * (1 - t) * self.f10
        return ((1 - t) * backward_warp(self.first, f_t0) + t * backward_warp(self.last, f_t1)).clip(0, 1)
