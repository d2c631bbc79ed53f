"""One window of generation: encode the given frames, plan once, sample, decode, paste references back.

The VAE is any object with `latent_channels`, `downscale`, `encode(images (N,3,H,W) in [0,1]) ->
raw latents (N,C,H/d,W/d)` and `decode(raw latents) -> images in [0,1]`. The encode step itself takes
any callable, so a host application's own VAE (ComfyUI's takes [B,H,W,C]) can be wrapped in a lambda.
Latents handed to the model are model-space: `(raw - config.latent_shift) * config.latent_scale`.
The planner sees the frames downscaled by `config.planner_downscale` (box filter) and encoded again.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .assemble import assemble_frames, neighbour_anchor
from .config import MarDiniConfig
from .errors import InputError
from .interpolation import Interpolator, anchor_frames, load_interpolator
from .masks import FrameMask
from .sampler import StepCallback, check_settings, denoise

Encoder = Callable[[torch.Tensor], torch.Tensor]  # images (N, 3, H, W) in [0, 1] -> raw latents (N, C, h, w)


@dataclass(frozen=True)
class Generation:
    """A generated window: pixels with the given frames pasted back exactly, and model-space latents."""

    frames: torch.Tensor  # (K, 3, H, W) float in [0, 1]
    latents: torch.Tensor  # (K, C, H/d, W/d) model-space
    mask: FrameMask
    anchor: "FlowAnchor | None" = None  # the flow anchor the residual was sampled around (flow-anchored models)


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


def default_guidance(mask: FrameMask) -> float:
    """The paper's guidance: 2.5 for image-to-video-like masks, none (1.0) when both ends are given."""
    return 1.0 if closed(mask) else 2.5


def closed(mask: FrameMask) -> bool:
    """Both ends given: every generated frame lies between given frames (interpolation, loop)."""
    return mask.given[0] and mask.given[-1]


def moving_anchor(mask: FrameMask, config: MarDiniConfig) -> bool:
    """Every generated frame's anchor carries motion: between given frames, or, for the flow anchor, past
    an end the motion of the two given frames nearest it continued (interpolation/anchors.py). Around a
    still copy of a given frame (image-to-video; past the ends for the neighbour blend) it does not."""
    return closed(mask) or (config.anchor == "flow" and len(mask.given_indices) >= 2)


def default_fidelity(mask: FrameMask, config: MarDiniConfig) -> float:
    """The sampler's fidelity (sampler.py) a model uses unless told otherwise.

    0 (the paper's DDIM) for models without an anchor. Where the anchor moves (`moving_anchor`) an
    anchored model returns its mean residual (1): a sampled residual with the wrong content costs more
    than it adds (on 16 training clips, expansion from 3 given frames scored 34.85 dB at 1 and 32.40 at
    0.8, below the last frame held still). Where the anchor is a still copy of the one given frame
    (image-to-video) the residual is the motion, and the mean of many futures stands still as a model
    learns, so there the model's calibrated `open_fidelity` mixes in the sample (chosen on training
    clips so generated clips move as much as the true ones).
    """
    if config.anchor == "none":
        return 0.0
    return 1.0 if moving_anchor(mask, config) else config.open_fidelity


def mean_scale_for(mask: FrameMask, config: MarDiniConfig) -> float:
    """How much of an anchored model's mean residual the sampler keeps: the model's calibrated
    `mean_scale` where the anchor moves; all of it around a still copy, where the residual is the motion."""
    return config.mean_scale if moving_anchor(mask, config) else 1.0


@dataclass(frozen=True)
class FlowAnchor:
    """The flow anchor of a window (flow-anchored models): pixels and their latents, given frames in place."""

    pixels: torch.Tensor  # (K, 3, H, W) in [0, 1]
    latents: torch.Tensor  # (K, C, H/d, W/d) model-space


def flow_anchor(vae, images: torch.Tensor, high: torch.Tensor, mask: FrameMask, config: MarDiniConfig,
                interpolator: Interpolator) -> FlowAnchor | None:
    """images (S, 3, H, W) and their latents `high` (S, C, h, w), one per mask source -> the window's
    anchor (interpolation/anchors.py), its generated frames encoded; None unless the model is flow-anchored."""
    if config.anchor != "flow":
        return None
    clip = arrange(mask, images.float().cpu())[0]  # (K, 3, H, W)
    frames = anchor_frames(np.ascontiguousarray(clip.permute(0, 2, 3, 1).numpy()), list(mask.given), interpolator)
    pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)
    latents = arrange(mask, high)[0].clone()
    generated = list(mask.generated_indices)
    if generated:
        latents[generated] = encode_scaled(vae.encode, pixels[generated], config, vae.downscale, 1).to(latents)
    return FlowAnchor(pixels=pixels, latents=latents)


def interpolator_for(model, interpolator: Interpolator | None) -> Interpolator | None:
    """The interpolator a flow-anchored model's anchors use: the one given, else the default (interpolation/)
    on the generator's device; None for other models, which never load one."""
    if interpolator is not None or model.config.anchor != "flow":
        return interpolator
    return load_interpolator(device=network_device(model.generator))


def network_device(network) -> torch.device:
    """Where a network's weights live (the planner may be moved off the GPU once it has run)."""
    return next(network.parameters()).device


@torch.no_grad()
def plan(model, low: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """The planner's signal for a clip, computed once per window. low (B, K, C, h, w) -> (B, K, N, D)."""
    device = network_device(model.planner)
    return model.planner(low.to(device), masked.to(device))


def sample(
    model,
    high: torch.Tensor,
    masked: torch.Tensor,
    signal: torch.Tensor | None,
    *,
    steps: int = 25,
    guidance: float = 1.0,
    eta: float = 0.0,
    fidelity: float = 0.0,
    mean_scale: float = 1.0,
    sampler: str = "ddim",
    flow: torch.Tensor | None = None,
    seed: int | Sequence[int] = 0,
    callback: StepCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """The DM's sampling steps for a planned clip. high (B, K, C, H, W) model-space -> same shape.

    sampler: "ddim" (the paper's) or "dpmpp_2m" (fewer steps, sampler.py); flow: the flow anchor's
    latents like `high` (flow-anchored models); seed: one for the batch, or one per clip (each clip
    then gets the noise it gets alone)."""
    device = network_device(model.generator)
    generator = torch.Generator().manual_seed(seed) if isinstance(seed, int) else [torch.Generator().manual_seed(s) for s in seed]
    return denoise(
        model, high.to(device), masked.to(device), None if signal is None else signal.to(device),
        steps=steps, guidance=guidance, eta=eta, fidelity=fidelity, mean_scale=mean_scale, sampler=sampler,
        flow=None if flow is None else flow.to(device),
        generator=generator, callback=callback, should_stop=should_stop,
    )


def check_sampling(steps: int = 25, guidance: float = 1.0, eta: float = 0.0, seed: int = 0, fidelity: float | None = None,
                   sampler: str = "ddim", **_hooks) -> None:
    """Raise InputError for sampling settings that cannot run, before any encoding or model call."""
    check_settings(steps, guidance, eta, 0.0 if fidelity is None else fidelity, sampler)
    if isinstance(seed, bool) or not isinstance(seed, int) or not -(2**63) <= seed < 2**64:
        raise InputError(f"seed must be an integer from -2**63 to 2**64 - 1, got {seed!r}")


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


def generate_latents(model, mask: FrameMask, high: torch.Tensor, low: torch.Tensor, *, flow: torch.Tensor | None = None,
                     fidelity: float | None = None, seed: int = 0, **sampling) -> torch.Tensor:
    """Plan once and sample one window from the given frames' latents (S, C, ...) -> (K, C, H, W).

    flow: the window's flow anchor latents (K, C, H, W) (`flow_anchor`; flow-anchored models);
    fidelity: None = the model's default for the mask (`default_fidelity`).
    """
    flow = None if flow is None else flow[None]
    return generate_latents_batch(model, mask, high[None], low[None], seeds=[seed], flow=flow, fidelity=fidelity, **sampling)[0]


def generate_latents_batch(model, mask: FrameMask, high: torch.Tensor, low: torch.Tensor, *, seeds: Sequence[int],
                           flow: torch.Tensor | None = None, fidelity: float | None = None, **sampling) -> torch.Tensor:
    """`generate_latents` for B windows of one mask in one planner and one sampler call: given latents
    (B, S, C, ...), flow anchors (B, K, C, H, W) -> (B, K, C, H, W). Window b draws its noise from its
    own generator seeded seeds[b], so it equals the window sampled alone with that seed."""
    config = model.config
    mask.validate(config.max_frames)
    if not len(seeds) == high.shape[0] == low.shape[0]:
        raise InputError(f"{len(seeds)} seeds for {high.shape[0]} high- and {low.shape[0]} low-resolution windows; give one seed per window")
    for seed in seeds:
        check_sampling(fidelity=fidelity, seed=seed, **sampling)
    for h, l in zip(high, low):
        check_given_latents(h, l, config)
    if config.anchor == "flow" and (flow is None or flow.shape != (len(seeds), mask.frames, *high.shape[2:])):
        raise InputError("this flow-anchored model needs the window's flow anchor (pipeline.flow_anchor) beside the given latents")
    masked = mask.to_tensor(len(seeds))
    signal = plan(model, torch.cat([arrange(mask, l) for l in low]), masked)
    fidelity = default_fidelity(mask, config) if fidelity is None else fidelity
    z = sample(model, torch.cat([arrange(mask, h) for h in high]), masked, signal, fidelity=fidelity,
               mean_scale=mean_scale_for(mask, config), flow=flow, seed=list(seeds), **sampling)
    if not torch.isfinite(z).all():  # the inputs were checked finite above: the model or its settings overflowed
        raise InputError("the model produced NaN or infinite latents; lower the guidance, or check the checkpoint's weights")
    return z


def generate(model, vae, images: torch.Tensor, mask: FrameMask, *, restore_detail: bool = True,
             interpolator: Interpolator | None = None, **sampling) -> Generation:
    """A whole window: images (S, 3, H, W) in [0, 1], one per mask source -> the clip of mask.frames.

    `restore_detail`: put generated frames back around their anchor in pixel space (assemble.py).
    `interpolator`: what makes a flow-anchored model's anchor (None: the default, `interpolator_for`).
    `sampling`: steps, guidance, eta, fidelity, seed, callback, should_stop (see `sample`).
    """
    config = model.config
    check_vae(vae, config)
    mask.validate(config.max_frames)
    check_sampling(**sampling)
    if images.shape[0] != mask.images_needed:
        raise InputError(f"mask {mask.pattern} takes {mask.images_needed} input images, got {images.shape[0]}")
    high, low = encode_frames(vae.encode, images, config, vae.downscale)
    anchor = flow_anchor(vae, images, high, mask, config, interpolator_for(model, interpolator))
    latents = generate_latents(model, mask, high, low, flow=None if anchor is None else anchor.latents, **sampling)
    frames = window_frames(vae, latents, images, mask, config, anchor, restore_detail)
    return Generation(frames=frames, latents=latents.cpu(), mask=mask, anchor=anchor)


def window_frames(vae, latents: torch.Tensor, images: torch.Tensor, mask: FrameMask, config: MarDiniConfig,
                  anchor: FlowAnchor | None, restore_detail: bool) -> torch.Tensor:
    """Model-space latents (K, C, h, w) and the given images (S, 3, H, W) -> the window's pixels (K, 3, H, W)
    on the CPU: given frames exact, generated ones decoded and put back around their anchor (assemble.py)."""
    pixels = decode_frames(vae, latents[frames_to_decode(mask, anchor, restore_detail)], config).cpu()
    return assemble_window(vae, pixels, images, mask, config, anchor, restore_detail)


def frames_to_decode(mask: FrameMask, anchor: FlowAnchor | None, restore_detail: bool) -> list[int]:
    """The window's frames whose latents are decoded: the generated ones, and the given ones when detail
    restoration blends their decodings (a caller that has a frame's decoding can reuse it)."""
    return list(mask.generated_indices) + (list(mask.given_indices) if restore_detail and anchor is None else [])


def assemble_window(vae, pixels: torch.Tensor, images: torch.Tensor, mask: FrameMask, config: MarDiniConfig,
                    anchor: FlowAnchor | None, restore_detail: bool) -> torch.Tensor:
    """`window_frames` from the decodings `pixels` (D, 3, H, W) of `frames_to_decode`, in that order."""
    images = images.float().cpu()
    generated = list(mask.generated_indices)
    decode = frames_to_decode(mask, anchor, restore_detail)
    decoded = pixels.new_zeros(mask.frames, *pixels.shape[1:])
    decoded[decode] = pixels
    if not restore_detail:
        return assemble_frames(decoded, images, mask)
    if anchor is None:
        return assemble_frames(decoded, images, mask, neighbour_anchor(decoded, images, mask))
    reconstruction = torch.zeros_like(decoded)
    if generated:
        reconstruction[generated] = decode_frames(vae, anchor.latents[generated], config).cpu()
    return assemble_frames(decoded, images, mask, (anchor.pixels, reconstruction))


def images_from_hwc(images) -> torch.Tensor:
    """(N, H, W, 3) arrays or tensors (readers, ComfyUI IMAGE) -> (N, 3, H, W) float tensor."""
    return rearrange(torch.as_tensor(images).float(), "n h w c -> n c h w")
