"""MarDini Smoother / Slower Video: a video in, every gap between its frames filled x2, x4 or x8.

The job frame-interpolation packs (RIFE, FILM) do, by MarDini's interpolation: the video's frames are
the given frames of a hierarchical schedule (mardini_core.generation.long_video), each window fills the gaps it
covers, and every input frame comes back exactly. Played at fps x multiplier the video is smoother
and as long; played at the input fps it is slower (slow motion).
"""
from __future__ import annotations

from mardini_core.errors import InputError
from mardini_core.generation import Sampling
from mardini_core.video_io import check_fps

from .fitting import FIT
from .checks import check_image_batch
from .long_run import run_long
from .sampler import RESTORE_DETAIL, SEED_MAX
from .types import MODEL_AND_VAE, MarDiniNode

MULTIPLIERS = {"x2": 2, "x4": 4, "x8": 8}


def smoother_positions(frames: int, multiplier: int) -> tuple[int, list[int]]:
    """(frames out, where each input frame lands): (N - 1) * m + 1 frames, input i at i * m."""
    if frames < 2:
        raise InputError(f"a smoother video needs at least 2 frames (a video, or Batch Images), got {frames}")
    return (frames - 1) * multiplier + 1, [i * multiplier for i in range(frames)]


class MarDiniSmootherVideo(MarDiniNode):
    SEARCH_ALIASES = ["interpolation", "frame interpolation", "interpolate frames", "rife", "film", "vfi", "slow motion", "fps", "frame rate", "smooth video", "more frames"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Makes a video smoother or slower: new frames are made between every two frames of your video (x2, x4 or x8), "
        "and your frames are kept exactly. Connect fps to Create Video for a smoother video of the same length; "
        "keep your video's own fps there for slow motion."
    )
    RETURN_TYPES = ("IMAGE", "FLOAT", "STRING")
    RETURN_NAMES = ("frames", "fps", "plan")
    OUTPUT_TOOLTIPS = (
        "Your frames with the new ones between them.",
        "Your fps times the multiplier: the same duration, smoother.",
        "Which frames each model run made (also printed in the console).",
    )
    FUNCTION = "smooth"

    REQUIRED = {
        **MODEL_AND_VAE,
        "video": ("IMAGE", {"tooltip": "The frames of your video, in order (e.g. images from Get Video "
                                       "Components or Load Video). Width and height: multiples of 32 for the "
                                       "embedded default (see 'fit')."}),
        "multiplier": (list(MULTIPLIERS), {"default": "x2", "tooltip":
            "New frames per gap: x2 adds one between every two frames, x4 three, x8 seven. Time grows with it."}),
        "fps": ("FLOAT", {"default": 24.0, "min": 0.01, "max": 1000.0, "step": 0.01, "tooltip":
            "Your video's frames per second (connect Get Video Components' fps); the fps output is this times "
            "the multiplier."}),
        "steps": ("INT", {"default": 25, "min": 1, "max": 1000, "tooltip":
            "How many refinement passes each new frame gets. More is cleaner and slower: 25 is the paper's "
            "choice, 8 to 12 is a quick draft on a CPU."}),
        "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True, "tooltip":
            "The random start of the new frames: change it for a different take."}),
    }
    OPTIONAL = {"restore_detail": RESTORE_DETAIL, "fit": FIT}

    def smooth(self, model, vae, video, multiplier, fps, steps, seed, restore_detail=True, fit="crop"):
        if multiplier not in MULTIPLIERS:
            raise InputError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, got {multiplier!r}")
        check_image_batch(video)
        check_fps(fps)  # a linked fps bypasses the widget's range: 0, NaN or inf would reach the saved video
        total, positions = smoother_positions(video.shape[0], MULTIPLIERS[multiplier])
        frames, plan = run_long(model, vae, video, positions, total, Sampling(steps=steps, guidance=1.0, seed=seed),
                                restore_detail=restore_detail, fit=fit, label="smoother video")
        return (frames, float(fps) * MULTIPLIERS[multiplier], plan)
