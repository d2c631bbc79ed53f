"""Synthetic motion over real frames: more kinds of motion than a handful of clips hold.

A clip is made from one real frame: the camera pans, zooms and turns along a smooth path, and a
patch cut from a second real frame (a soft-edged ellipse) moves across it on its own path,
occluding and uncovering the background, which is where optical flow fails and a learned residual
has something to learn. Motion is linear in time plus a random quadratic part (acceleration).
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def _rand(gen: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=gen))


def synthetic_clip(background: np.ndarray, foreground: np.ndarray, frames: int, gen: torch.Generator) -> np.ndarray:
    """background, foreground (H, W, 3) uint8 -> (frames, H, W, 3) uint8 of camera and object motion."""
    h, w = background.shape[:2]
    pan = np.array([_rand(gen, -0.12, 0.12) * w, _rand(gen, -0.12, 0.12) * h])
    bend = np.array([_rand(gen, -0.04, 0.04) * w, _rand(gen, -0.04, 0.04) * h])
    zoom, turn = _rand(gen, -0.12, 0.12), _rand(gen, -6.0, 6.0)
    size = (int(_rand(gen, 0.2, 0.45) * h), int(_rand(gen, 0.2, 0.45) * w))
    start = np.array([_rand(gen, 0.1, 0.9) * w, _rand(gen, 0.1, 0.9) * h])
    move = np.array([_rand(gen, -0.35, 0.35) * w, _rand(gen, -0.35, 0.35) * h])
    top, left = int(_rand(gen, 0, h - size[0])), int(_rand(gen, 0, w - size[1]))
    patch = foreground[top : top + size[0], left : left + size[1]].astype(np.float32)
    alpha = np.zeros(size, np.float32)
    cv2.ellipse(alpha, (size[1] // 2, size[0] // 2), (size[1] // 2 - 1, size[0] // 2 - 1), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 1.5)[..., None]
    object_on = float(torch.rand((), generator=gen)) < 0.8
    out = []
    for k in range(frames):
        t = k / max(1, frames - 1)
        shift = pan * t + bend * t * t
        m = cv2.getRotationMatrix2D((w / 2, h / 2), turn * t, 1.0 + zoom * t)
        m[:, 2] += shift
        frame = cv2.warpAffine(background, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        if object_on:
            cx, cy = start + move * t
            y0, x0 = int(round(cy - size[0] / 2)), int(round(cx - size[1] / 2))
            ys, xs = slice(max(0, y0), min(h, y0 + size[0])), slice(max(0, x0), min(w, x0 + size[1]))
            py, px = slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0)
            if ys.stop > ys.start and xs.stop > xs.start:
                a = alpha[py, px]
                frame[ys, xs] = a * patch[py, px] + (1 - a) * frame[ys, xs]
        out.append(frame.clip(0, 255).astype(np.uint8))
    return np.stack(out)
