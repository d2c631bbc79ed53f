"""The VIDIM-Bench-style protocol: what each method is given, which frames are scored, and how.

Interpolation (paper §3.2, Appendix D): the first and last frames of a clip are given, the frames
between are generated; the middle frame (the 5th of 9, the farthest from both references) is
scored with PSNR and SSIM. Image-to-video: the first frame is given, the rest generated, and every
generated frame is scored. Against a single ground truth that is a weak metric for i2v (many
futures are plausible, so a still frame often scores well); it is reported for tracking only. Motion
is optical flow (OpenCV DIS, mean pixels per frame between consecutive frames): flicker is not motion.
Expansion: the first 3 of 9 frames given, the 6 after them generated and all scored, with their motion.
Smoother (the Smoother node's x2): every other frame of a 17-frame clip given (0, 2, ..., 16), the
8 between generated, all 8 scored; clips shorter than 17 frames are left out of this task only.

A method is a function of numpy frames (H, W, 3) in [0, 1] returning the whole clip
(frames, H, W, 3) with the given frames in place, so models and baselines are scored alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..interpolation import Interpolator, anchor_frames
from ..interpolation.dis import dis_flow
from .baselines import continued_motion, interpolated, linear_blend, repeat_first, repeat_last
from .metrics import psnr, ssim

InterpolationMethod = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # first, last, frames -> clip
Animator = Callable[[np.ndarray, int], np.ndarray]  # first, frames -> clip
Expander = Callable[[np.ndarray, int], np.ndarray]  # given first frames (G, H, W, 3), frames -> clip
Smoother = Callable[[np.ndarray], np.ndarray]  # given frames (N, H, W, 3) -> (2N - 1, H, W, 3) with them at even places

TASKS = ("interpolation", "i2v", "expansion", "smoother")
EXPANSION_GIVEN = 3
GENERATED = {"interpolation": slice(1, -1), "i2v": slice(1, None), "expansion": slice(EXPANSION_GIVEN, None),
             "smoother": slice(1, None, 2)}  # scored and FID frames
SMOOTHER_FRAMES = 17

I2V_BASELINES: dict[str, Animator] = {"repeat_first": repeat_first}
EXPANSION_BASELINES: dict[str, Expander] = {"repeat_last": repeat_last, "continued": continued_motion}


def interpolator_baselines(interpolators: dict[str, Interpolator]) -> tuple[dict[str, InterpolationMethod], dict[str, Smoother]]:
    """Linear blending and each interpolator (by name: "dis_flow", "rife_best"...), as interpolation and smoother methods."""
    interpolation: dict[str, InterpolationMethod] = {"linear": linear_blend}
    interpolation.update({name: interpolated(i) for name, i in interpolators.items()})
    return interpolation, {name: pairwise(i) for name, i in interpolators.items()}


def pairwise(interpolator: Interpolator) -> Smoother:
    """An interpolator as a x2 smoother: the frame halfway between every two given frames."""
    def smooth(given: np.ndarray) -> np.ndarray:
        clip = np.zeros((2 * len(given) - 1, *given.shape[1:]), np.float32)
        clip[::2] = given
        return anchor_frames(clip, [k % 2 == 0 for k in range(len(clip))], interpolator)
    return smooth



def scores(truth: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Mean PSNR and SSIM over pairs of frames. truth, generated: (N, H, W, 3)."""
    return {
        "psnr": float(np.mean([psnr(t, g) for t, g in zip(truth, generated)])),
        "ssim": float(np.mean([ssim(t, g) for t, g in zip(truth, generated)])),
    }


def motion(clip: np.ndarray) -> float:
    """How much a clip moves: the mean length of the DIS optical flow between consecutive frames, in pixels per frame."""
    return float(np.mean([np.linalg.norm(dis_flow(a, b), axis=-1).mean() for a, b in zip(clip[:-1], clip[1:])]))


@dataclass
class ClipResult:
    """One clip's scores per method (the frames are returned beside it, so results stay small)."""

    name: str
    interpolation: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> mid-frame scores
    i2v: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> scores over generated frames, and motion
    expansion: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> scores over generated frames, and motion
    smoother: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> scores over the odd frames (17-frame clips)
    true_motion: float = 0.0  # the true clip's motion, beside the i2v and expansion methods'


def evaluate_clip(
    name: str, truth: np.ndarray, interpolators: dict[str, InterpolationMethod], animators: dict[str, Animator],
    smoothers: dict[str, Smoother] | None = None, long_truth: np.ndarray | None = None, expanders: dict[str, Expander] | None = None,
) -> tuple[ClipResult, dict[str, dict[str, np.ndarray]]]:
    """Run every method on one ground-truth clip (frames, H, W, 3) and score it; the smoothers on
    `long_truth` (SMOOTHER_FRAMES, H, W, 3) where the clip has that many frames.

    Returns the scores and each method's clip: {"interpolation": {method: clip}, "i2v": {...}, "expansion": ..., "smoother": ...}.
    """
    frames, mid = len(truth), len(truth) // 2
    result, outputs = ClipResult(name, true_motion=motion(truth)), {task: {} for task in TASKS}
    for method, interpolate in interpolators.items():
        clip = outputs["interpolation"][method] = interpolate(truth[0], truth[-1], frames)
        result.interpolation[method] = scores(truth[mid : mid + 1], clip[mid : mid + 1])
    for method, animate in animators.items():
        clip = outputs["i2v"][method] = animate(truth[0], frames)
        generated = GENERATED["i2v"]
        result.i2v[method] = {**scores(truth[generated], clip[generated]), "motion": motion(clip)}
    for method, expand in (expanders or {}).items():
        clip = outputs["expansion"][method] = expand(truth[:EXPANSION_GIVEN], frames)
        generated = GENERATED["expansion"]
        result.expansion[method] = {**scores(truth[generated], clip[generated]), "motion": motion(clip[EXPANSION_GIVEN - 1 :])}
    for method, smooth in (smoothers or {}).items() if long_truth is not None else ():
        clip = outputs["smoother"][method] = smooth(long_truth[::2])
        odd = GENERATED["smoother"]
        result.smoother[method] = scores(long_truth[odd], clip[odd])
    return result, outputs


def mean_scores(results: list[ClipResult], task: str) -> dict[str, dict[str, float]]:
    """Per method, the mean over clips (those the task scored) of each score. task: one of TASKS."""
    scored = [r for r in results if getattr(r, task)]
    if not scored:
        return {}
    methods = getattr(scored[0], task)
    return {
        method: {metric: float(np.mean([getattr(r, task)[method][metric] for r in scored])) for metric in methods[method]}
        for method in methods
    }
