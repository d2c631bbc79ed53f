"""Input checks shared by the nodes, with messages that say how to fix the wiring."""
from __future__ import annotations

import torch

from mardini_core.errors import InputError, MaskError
from mardini_core.masks import FrameMask
from mardini_core.memory import check_fits, clip_bytes, generation_bytes, window_bytes


def same_mask(expected: FrameMask, got: FrameMask, what: str) -> None:
    """Links from different Frame Mask nodes (or an edited mask) must not be mixed in one clip."""
    if expected.given != got.given or expected.sources != got.sources:
        raise MaskError(
            f"the {what} was made for mask {expected.pattern} but this node got mask {got.pattern}; "
            "connect the same MarDini Frame Mask node to every node of the clip"
        )


def images_for_mask(images: torch.Tensor, mask: FrameMask) -> torch.Tensor:
    """IMAGE [S,H,W,C] holding one image per given frame, in mask order -> its RGB channels."""
    if images.dim() != 4:
        raise InputError(f"expected an IMAGE batch [frames, height, width, channels], got shape {tuple(images.shape)}")
    needed = mask.images_needed
    if images.shape[0] != needed:
        how = "one image used as first and last frame" if mask.sources and len(set(mask.sources)) < len(mask.sources) \
            else "one per x in the pattern, left to right"
        raise InputError(
            f"mask {mask.pattern} takes {needed} input image(s) ({how}) but got {images.shape[0]}; "
            "batch the right images with Batch Images, or change the mask"
        )
    return image_pixels(images)


BYTE_RANGE = 1.5  # a maximum above this is not an overshoot of 0..1 but 0..255 pixel values


def image_pixels(images: torch.Tensor) -> torch.Tensor:
    """IMAGE [S,H,W,C] -> its RGB channels, finite and in 0..1: alpha dropped, a small overshoot (an
    upscaler's ringing) clamped; NaN, 1 or 2 channels (a mask or grey image) and 0..255 values are
    refused with the fix."""
    channels = images.shape[-1]
    if channels not in (3, 4):
        raise InputError(
            f"the IMAGE has {channels} channel(s) (a mask or a grey image?); MarDini takes RGB or RGBA images: "
            "convert it to RGB first (e.g. Convert Mask to Image for a mask)"
        )
    rgb = images[..., :3].float()
    if not torch.isfinite(rgb).all():
        raise InputError("the IMAGE holds NaN or infinite values; check the node that made it (an upscaler or math node)")
    low, high = float(rgb.min()), float(rgb.max())
    if high > BYTE_RANGE or low < 1 - BYTE_RANGE:
        raise InputError(
            f"the IMAGE values run from {low:g} to {high:g}, but ComfyUI images are 0..1"
            + ("; these look like 0..255 pixel values: divide them by 255" if high > BYTE_RANGE else "; rescale them to 0..1")
        )
    return rgb.clamp(0, 1)


def latent_matches_mask(latent: dict, mask: FrameMask) -> None:
    """The Frame Assembler's LATENT must come from a MarDini Sampler run with this very mask: its
    noise_mask (0 on given frames) names the given frames; a latent of another clip is refused."""
    noise = latent.get("noise_mask") if isinstance(latent, dict) else None
    if not isinstance(noise, torch.Tensor) or noise.dim() < 1 or noise.shape[0] != mask.frames:
        return  # no frame mask, or another frame count: the frame-count check reports that
    given = tuple(bool(v) for v in (noise.reshape(noise.shape[0], -1).amax(dim=1) == 0).tolist())
    if given != tuple(mask.given):
        pattern = "".join("x" if g else "." for g in given)
        raise MaskError(
            f"the LATENT was sampled with mask {pattern} but this node got mask {mask.pattern}; "
            "connect the same MarDini Frame Mask node to every node of the clip"
        )


def check_image_batch(images) -> None:
    if images.dim() != 4 or images.shape[0] == 0:
        raise InputError(f"expected an IMAGE batch [frames, height, width, channels], got shape {tuple(images.shape)}")


def check_request(frames: int, window: int, height: int, width: int, device) -> None:
    """The whole request against the memory it needs, before any of it is allocated: on a CPU all of it in
    RAM; on a GPU the frames in RAM and one window against the GPU's whole memory (ComfyUI's model
    management moves other models out to make room, so what is free now is not the limit)."""
    what, fix = f"{frames} frames of {width}x{height}", "make fewer frames, or smaller pictures (an Upscale Image node before this one)"
    if torch.device(device).type == "cpu":
        check_fits(generation_bytes(frames, min(frames, window), height, width), what, fix)
        return
    check_fits(clip_bytes(frames, height, width), what, fix)
    check_fits(window_bytes(min(frames, window), height, width), f"a window of {min(frames, window)} frames of {width}x{height}",
               "make smaller pictures (an Upscale Image node before this one)", device, whole=True)
