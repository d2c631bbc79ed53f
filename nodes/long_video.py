"""MarDini Long Video: hierarchical auto-regressive generation past the model's window, in one node.

The schedule of model calls (mardini_core.hierarchical.schedule_windows) is a pure function of the request;
it comes out as text so users see which windows ran, and it is printed to the console before running.
"""
from __future__ import annotations

import torch

from mardini_core.errors import InputError
from mardini_core.hierarchical import schedule_windows, run_schedule
from mardini_core.fit import fit_images
from mardini_core.pipeline import images_from_hwc, size_multiple

from . import comfy_bridge
from .comfy_vae import ComfyVAE
from .fitting import FIT
from .sampler import FIDELITY, RESTORE_DETAIL, SAMPLER, sampling_inputs
from .types import MODEL_AND_VAE

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


class MarDiniLongVideo:
    SEARCH_ALIASES = ["slow motion", "keyframes", "extend video", "video expansion", "continue video", "loop", "long video", "interpolation"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Clips longer than the model's window, one model call per window (paper, Appendix F.1). "
        "slow motion: the images spread evenly over `frames` and everything between generated "
        "(e.g. 4 images -> 128 frames); expansion: the images are the first frames and the video continues; "
        "loop: the images spread over one period that closes on the first image."
    )
    CATEGORY = "MarDini"
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("frames", "plan")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
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
            },
            "optional": {"restore_detail": RESTORE_DETAIL, "fit": FIT, "fidelity": FIDELITY, "sampler": SAMPLER},
        }

    def generate(self, model, vae, images, mode, frames, overlap, steps, guidance, seed, eta, restore_detail=True, fit="crop",
                 fidelity=-1.0, sampler="ddim"):
        net, config = model.model, model.config
        if images.dim() != 4 or images.shape[0] == 0:
            raise InputError(f"expected an IMAGE batch [frames, height, width, channels], got shape {tuple(images.shape)}")
        positions = input_positions(mode, images.shape[0], frames)
        total = positions[-1] + 1 if mode == "loop" else frames
        schedule = schedule_windows(total, positions, config.max_frames, overlap or None)
        print(f"[MarDini] long video schedule:\n{schedule.describe()}")
        adapter = ComfyVAE(vae, config.latent_channels, config.vae)
        pixels = fit_images(images_from_hwc(images[..., :3]), size_multiple(config, adapter.downscale), fit)
        if mode == "loop":
            pixels = torch.cat([pixels, pixels[:1]])
        progress = comfy_bridge.ScheduleProgress(len(schedule), steps)
        model.load_all()  # the planner runs once per window: both networks stay loaded for the whole plan
        video = run_schedule(
            schedule, net, adapter, pixels, seed=seed, steps=steps, guidance=guidance, eta=eta, restore_detail=restore_detail,
            fidelity=None if fidelity < 0 else fidelity, sampler=sampler,  # None: each window's own default
            interpolator=model.interpolator(), batch=comfy_bridge.window_batch(model.device),
            on_window=progress.on_window, callback=progress.step, should_stop=progress.should_stop,
        )
        model.planner_done()
        out = video[:frames].movedim(1, -1).to(comfy_bridge.output_device())
        return (out, schedule.describe())
