"""What MarDini Long Video and MarDini Smoother share: a window schedule run on a ComfyUI IMAGE batch,
with ComfyUI's progress bar, Cancel and memory management (the KSampler -> common_ksampler shape)."""
from __future__ import annotations

import torch

from mardini_core.fit import fit_images
from mardini_core.generation import Sampling, images_from_hwc, run_schedule, schedule_windows, size_multiple

from . import comfy_bridge
from .checks import check_request, image_pixels
from .comfy_vae import ComfyVAE


def run_long(model, vae, images, positions: list[int], total: int, sampling: Sampling, *, restore_detail: bool, fit: str,
             overlap: int | None = None, close_loop: bool = False, label: str = "long video") -> tuple[torch.Tensor, str]:
    """images IMAGE [N, H, W, C] at frame `positions` of a `total`-frame video -> (the video as an IMAGE
    [total, H, W, 3], the schedule as text). close_loop: the first image is also the last frame."""
    rgb = image_pixels(images)  # checked before any model work
    config = model.config
    check_request(total, config.max_frames, *rgb.shape[1:3], model.device)
    schedule = schedule_windows(total, positions, config.max_frames, overlap)
    print(f"[MarDini] {label} schedule:\n{schedule.describe()}")
    adapter = ComfyVAE(vae, config.latent_channels, config.vae)
    pixels = fit_images(images_from_hwc(rgb), size_multiple(config, adapter.downscale), fit)
    if close_loop:
        pixels = torch.cat([pixels, pixels[:1]])
    progress = comfy_bridge.ScheduleProgress(len(schedule), sampling.steps)
    model.load_all()  # the planner runs once per window: both networks stay loaded for the whole schedule
    video = run_schedule(schedule, model.model, adapter, pixels, sampling, hooks=progress.hooks(), restore_detail=restore_detail,
                         interpolator=model.interpolator())
    model.planner_done()
    return video.movedim(1, -1).to(comfy_bridge.output_device()), schedule.describe()
