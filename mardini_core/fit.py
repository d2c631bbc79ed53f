"""Fitting images to a size the model can take (sides multiples of `size_multiple`), instead of failing.

`crop`: the largest valid size inside the image, centred (nothing is stretched; edges are lost).
`resize`: the nearest valid size, the whole picture scaled (area filter down, bilinear up).
`off`: unchanged (the model then refuses a wrong size with the size it would take).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InputError

FIT_MODES = ("crop", "resize", "off")


def valid_size(height: int, width: int, multiple: int, mode: str = "crop") -> tuple[int, int]:
    """(H, W) the fit gives: multiples of `multiple`, at least one `multiple` each."""
    if mode not in FIT_MODES:
        raise InputError(f"unknown fit {mode!r}; choose one of: {', '.join(FIT_MODES)}")
    if mode == "off":
        return height, width
    if mode == "crop":
        return max(multiple, height // multiple * multiple), max(multiple, width // multiple * multiple)
    return max(multiple, round(height / multiple) * multiple), max(multiple, round(width / multiple) * multiple)


def fit_to(images: torch.Tensor, size: tuple[int, int], mode: str = "crop") -> torch.Tensor:
    """images (N, C, H, W) -> (N, C, *size) by centre crop (padding by edge repeat if smaller) or resize."""
    if mode == "off" or tuple(images.shape[-2:]) == tuple(size):
        return images
    h, w = size
    if mode == "resize":
        shrink = h * w <= images.shape[-2] * images.shape[-1]
        out = F.interpolate(images.float(), size=(h, w), mode="area" if shrink else "bilinear", align_corners=None if shrink else False)
        return out.clamp(0, 1).to(images.dtype)
    if mode != "crop":
        raise InputError(f"unknown fit {mode!r}; choose one of: {', '.join(FIT_MODES)}")
    pad_h, pad_w = max(0, h - images.shape[-2]), max(0, w - images.shape[-1])
    if pad_h or pad_w:  # smaller than one size step: repeat the edges
        images = F.pad(images.float(), (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), mode="replicate").to(images.dtype)
    top, left = (images.shape[-2] - h) // 2, (images.shape[-1] - w) // 2
    return images[..., top : top + h, left : left + w]


def fit_images(images: torch.Tensor, multiple: int, mode: str = "crop") -> torch.Tensor:
    """images (N, C, H, W) -> the same frames at `valid_size` (unchanged when already valid or mode is off)."""
    return fit_to(images, valid_size(images.shape[-2], images.shape[-1], multiple, mode), mode)
