"""Frames to model-space latents and back, with the checks that name what a caller must fix.

The VAE is any object with `latent_channels`, `downscale`, `encode(images (N,3,H,W) in [0,1]) ->
raw latents (N,C,H/d,W/d)` and `decode(raw latents) -> images in [0,1]`. The encode step itself takes
any callable, so a host application's own VAE (ComfyUI's takes [B,H,W,C]) can be wrapped in a lambda.
Latents handed to the model are model-space: `(raw - config.latent_shift) * config.latent_scale`.
The planner sees the frames downscaled by `config.planner_downscale` (box filter) and encoded again.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange

from ..config import MarDiniConfig
from ..errors import InputError
from ..masks import FrameMask

Encoder = Callable[[torch.Tensor], torch.Tensor]  # images (N, 3, H, W) in [0, 1] -> raw latents (N, C, h, w)


def size_multiple(config: MarDiniConfig, downscale: int = 8) -> int:
    """Pixel height and width must be multiples of this: patches at both the DM's and the planner's scale."""
    high = downscale * config.generator.patch
    low = downscale * config.planner_downscale * config.planner.patch
    return math.lcm(high, low)


def check_images(images: torch.Tensor, multiple: int) -> None:
    """Raise InputError naming the fix for images the model cannot take. images: (N, 3, H, W)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"images must have shape (frames, 3, height, width) with RGB channels, got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise InputError("no input images; give at least one reference image")
    if not torch.isfinite(images).all():
        raise InputError("input images contain NaN or infinite values; check the image files or the upstream node")
    h, w = images.shape[-2:]
    if h % multiple or w % multiple or h == 0 or w == 0:
        # the nearest valid size, ties towards the smaller (what 'fit' = crop gives)
        fit_h, fit_w = (max(multiple, (side + multiple // 2 - 1) // multiple * multiple) for side in (h, w))
        raise InputError(
            f"image size {w}x{h} must be a multiple of {multiple} on both sides for this model; crop or resize to e.g. "
            f"{fit_w}x{fit_h} (MarDini VAE Encode's 'fit' widget or the CLI's --size do it for you)"
        )


def check_vae(vae, config: MarDiniConfig) -> None:
    """Refuse a VAE whose latents the model cannot read, before any encoding."""
    if vae.latent_channels != config.latent_channels:
        raise InputError(
            f"the VAE makes {vae.latent_channels}-channel latents but the model expects {config.latent_channels}; "
            f"load the VAE the model was trained with ({config.vae or 'see its config'})"
        )


def to_model_space(raw: torch.Tensor, config: MarDiniConfig) -> torch.Tensor:
    return (raw.float() - config.latent_shift) * config.latent_scale


def from_model_space(z: torch.Tensor, config: MarDiniConfig) -> torch.Tensor:
    return z / config.latent_scale + config.latent_shift


def encode_frames(encode: Encoder, images: torch.Tensor, config: MarDiniConfig, downscale: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """images (N, 3, H, W) in [0, 1] -> model-space latents (high (N, C, H/d, W/d), low (N, C, h, w))."""
    return encode_scaled(encode, images, config, downscale, 1), encode_scaled(encode, images, config, downscale, config.planner_downscale)


def encode_scaled(encode: Encoder, images: torch.Tensor, config: MarDiniConfig, downscale: int, factor: int) -> torch.Tensor:
    """Model-space latents of the images shrunk by `factor` (box filter; 1 = the DM's, planner_downscale = the planner's)."""
    check_images(images, size_multiple(config, downscale))
    images = images.float()
    if factor > 1:
        images = F.interpolate(images, scale_factor=1 / factor, mode="area")
    z = encode(images)
    expected = (images.shape[0], config.latent_channels, images.shape[2] // downscale, images.shape[3] // downscale)
    if tuple(z.shape) != expected:
        raise InputError(
            f"the VAE returned latents of shape {tuple(z.shape)} for images of {tuple(images.shape)}, expected {expected}; "
            f"use the VAE the model was trained with ({config.vae or 'see its config'})"
        )
    return to_model_space(z, config)


def decode_frames(vae, latents: torch.Tensor, config: MarDiniConfig) -> torch.Tensor:
    """Model-space latents (N, C, h, w) -> images (N, 3, H, W) clamped to [0, 1]."""
    return vae.decode(from_model_space(latents, config)).float().clamp(0, 1)


def arrange(mask: FrameMask, given: torch.Tensor) -> torch.Tensor:
    """Per-source tensors (S, ...) -> a clip (1, K, ...) with each given frame in place, zeros elsewhere."""
    if given.shape[0] < mask.images_needed:
        raise InputError(f"mask {mask.pattern} needs {mask.images_needed} input images, got {given.shape[0]}")
    clip = given.new_zeros((mask.frames, *given.shape[1:]))
    clip[list(mask.given_indices)] = given[list(mask.sources)]
    return clip[None]


def check_given_latents(high: torch.Tensor, low: torch.Tensor, config: MarDiniConfig) -> None:
    """Raise InputError unless high (S, C, H, W) and low (S, C, H/f, W/f) are finite latents of the same frames."""
    if high.dim() != 4 or low.dim() != 4:
        raise InputError(
            f"given latents must have shape (frames, channels, height, width), got {tuple(high.shape)} and {tuple(low.shape)}"
        )
    if high.shape[0] != low.shape[0]:
        raise InputError(f"{high.shape[0]} high-resolution but {low.shape[0]} low-resolution latents; encode the same frames for both")
    f = config.planner_downscale
    (hh, hw), (lh, lw) = high.shape[-2:], low.shape[-2:]
    if hh % f or hw % f or (lh, lw) != (hh // f, hw // f):
        raise InputError(
            f"low-resolution latents of {lw}x{lh} do not match high-resolution latents of {hw}x{hh} shrunk by "
            f"planner_downscale {f}; encode both with encode_frames"
        )
    if not (torch.isfinite(high).all() and torch.isfinite(low).all()):
        raise InputError("the given latents contain NaN or infinite values; check the VAE or the upstream node")


def network_device(network) -> torch.device:
    """Where a network's weights live (the planner may be moved off the GPU once it has run)."""
    return next(network.parameters()).device


def images_from_hwc(images) -> torch.Tensor:
    """(N, H, W, 3) arrays or tensors (readers, ComfyUI IMAGE) -> (N, 3, H, W) float tensor."""
    return rearrange(torch.as_tensor(images).float(), "n h w c -> n c h w")
