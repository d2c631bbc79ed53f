"""The VIDIM-Bench-style protocol: what each method is given, which frames are scored, and how.

Interpolation (paper §3.2, Appendix D): the first and last frames of a clip are given, the frames
between are generated; the middle frame (the 5th of 9, the farthest from both references) is
scored with PSNR and SSIM. Image-to-video: the first frame is given, the rest generated, and every
generated frame is scored. Against a single ground truth that is a weak metric for i2v (many
futures are plausible, so a still frame often scores well); it is reported for tracking only.

A method is a function of numpy frames (H, W, 3) in [0, 1] returning the whole clip
(frames, H, W, 3) with the given frames in place, so models and baselines are scored alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .baselines import dis_flow_interpolate, linear_blend, repeat_first
from .metrics import psnr, ssim

Interpolator = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # first, last, frames -> clip
Animator = Callable[[np.ndarray, int], np.ndarray]  # first, frames -> clip

TASKS = ("interpolation", "i2v")
GENERATED = {"interpolation": slice(1, -1), "i2v": slice(1, None)}  # frames each task generates (FID's frames)

INTERPOLATION_BASELINES: dict[str, Interpolator] = {"linear": linear_blend, "dis_flow": dis_flow_interpolate}
I2V_BASELINES: dict[str, Animator] = {"repeat_first": repeat_first}


def scores(truth: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean PSNR and SSIM over pairs of frames. truth, generated: (N, H, W, 3)."""
    return {
        "psnr": float(np.mean([psnr(t, g) for t, g in zip(truth, generated)])),
        "ssim": float(np.mean([ssim(t, g) for t, g in zip(truth, generated)])),
    }


def motion(clip: np.ndarray) -> float:
    """Mean absolute change between consecutive frames (0..1): how much a clip moves."""
    return float(np.abs(np.diff(clip.astype(np.float32), axis=0)).mean())


@dataclass
class ClipResult:
    """One clip's scores per method (the frames are returned beside it, so results stay small)."""

    name: str
    interpolation: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> mid-frame scores
    i2v: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> scores over generated frames, and motion
    true_motion: float = 0.0  # the true clip's motion, beside the i2v methods'


def evaluate_clip(
    name: str, truth: np.ndarray, interpolators: dict[str, Interpolator], animators: dict[str, Animator]
) -> tuple[ClipResult, dict[str, dict[str, np.ndarray]]]:
    """Run every method on one ground-truth clip (frames, H, W, 3) and score it.

    Returns the scores and each method's clip: {"interpolation": {method: clip}, "i2v": {...}}.
    """
    frames, mid = len(truth), len(truth) // 2
    result, outputs = ClipResult(name, true_motion=motion(truth)), {"interpolation": {}, "i2v": {}}
    for method, interpolate in interpolators.items():
        clip = outputs["interpolation"][method] = interpolate(truth[0], truth[-1], frames)
        result.interpolation[method] = scores(truth[mid : mid + 1], clip[mid : mid + 1])
    for method, animate in animators.items():
        clip = outputs["i2v"][method] = animate(truth[0], frames)
        generated = GENERATED["i2v"]
        result.i2v[method] = {**scores(truth[generated], clip[generated]), "motion": motion(clip)}
    return result, outputs


def mean_scores(results: list[ClipResult], task: str) -> dict[str, dict[str, float]]:
    """Per method, the mean over clips of each score. task: "interpolation" or "i2v"."""
    methods = getattr(results[0], task)
    return {
        method: {metric: float(np.mean([getattr(r, task)[method][metric] for r in results])) for metric in methods[method]}
        for method in methods
    }
