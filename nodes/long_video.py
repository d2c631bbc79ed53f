"""MarDini Long Video: hierarchical auto-regressive generation past the model's window, in one node.

The schedule of model calls (mardini_core.generation.long_video.schedule_windows) is a pure function of the request;
it comes out as text so users see which windows ran, and it is printed to the console before running.
"""
from __future__ import annotations

from mardini_core.errors import InputError

from .fitting import FIT
from .checks import check_image_batch
from .long_run import run_long
from .sampler import FIDELITY, RESTORE_DETAIL, SAMPLER, sampling_from_widgets, sampling_inputs
from .types import MODEL_AND_VAE, MarDiniNode

MODES = ("slow motion", "expansion", "loop")


def input_positions(mode: str, images: int, frames: int) -> list[int]:
    """Where the input images sit among the output frames (a loop adds image 0 one period later)."""
    if mode == "slow motion":
        if images < 2:
            raise InputError("slow motion needs at least 2 images (first and last frame); use expansion for one image")
        return [round(i * (frames - 1) / (images - 1)) for i in range(images)]
    if mode == "expansion":
        return list(range(images))
    return [round(i * frames / images) for i in range(images)] + [frames]


class MarDiniLongVideo(MarDiniNode):
    SEARCH_ALIASES = ["slow motion", "keyframes", "extend video", "video expansion", "continue video", "loop", "long video", "interpolation"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Clips longer than the model's window, one model call per window (paper, Appendix F.1). "
        "slow motion: the images spread evenly over `frames` and everything between generated "
        "(e.g. 4 images -> 128 frames); expansion: the images are the first frames and the video continues; "
        "loop: the images spread over one period that closes on the first image."
    )
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("frames", "plan")
    FUNCTION = "generate"

    REQUIRED = {
        **MODEL_AND_VAE,
        "images": ("IMAGE", {"tooltip": "Your pictures, in time order. Width and height: multiples of 32 for "
                                        "the embedded default (see 'fit')."}),
        "mode": (list(MODES), {"default": "slow motion", "tooltip":
            "slow motion: your pictures spread evenly over the video, everything between is made. expansion: "
            "your pictures are the first frames and the video goes on. loop: the video returns to the first picture."}),
        "frames": ("INT", {"default": 128, "min": 2, "max": 4096, "tooltip":
            "Frames in the finished video. Time grows with it: about one model run per 8 new frames."}),
        "overlap": ("INT", {"default": 0, "min": 0, "max": 1024, "tooltip":
            "expansion: how many finished frames each next piece looks back at; 0 = automatic."}),
        **sampling_inputs(guidance_default=1.0),
    }
    OPTIONAL = {"restore_detail": RESTORE_DETAIL, "fit": FIT, "fidelity": FIDELITY, "sampler": SAMPLER}

    def generate(self, model, vae, images, mode, frames, overlap, steps, guidance, seed, eta, restore_detail=True, fit="crop",
                 fidelity=-1.0, sampler="ddim"):
        check_image_batch(images)
        positions = input_positions(mode, images.shape[0], frames)
        total = positions[-1] + 1 if mode == "loop" else frames
        video, plan = run_long(model, vae, images, positions, total, sampling_from_widgets(steps, guidance, seed, eta, fidelity, sampler),
                               restore_detail=restore_detail, fit=fit, overlap=overlap or None, close_loop=mode == "loop")
        return (video[:frames], plan)
