"""One window of generation in four stages: encode -> plan -> sample -> decode.

`generate` runs them in a row; the long video (long_video.py) runs them window after window, in
batches (a window whose frames are its anchor's whatever the networks say needs none of them:
`made_in_pixels`, `anchor_window`); the ComfyUI nodes call one stage each (VAE Encode, Planner, Sampler, Frame Assembler); the
bench times them. (The training preview samples a training clip with the sampler's kernel: a training
mask may give no frame, which no window takes.) Every check a stage needs lives in that stage, so each
path through them is checked alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import MarDiniConfig
from ..errors import GenerationInterrupted, InputError
from ..interpolation import Interpolator, anchor_frames, load_interpolator
from ..masks import FrameMask
from .assemble import assemble_frames, neighbour_anchor
from .latents import (
    arrange, check_given_latents, check_vae, decode_frames, encode_frames, encode_scaled, network_device,
)
from .sampler import denoise
from .settings import NO_HOOKS, Hooks, Sampling, check_seed, resolve


@dataclass(frozen=True)
class Anchor:
    """What a window's generated frames start from and are put back around (anchor.py, assemble.py).

    `kind` is the model's: "none" (noise, the paper), "neighbours" (the given frames' blend, made from
    the latents inside the sampler) or "flow" (an interpolator's frames: `pixels` (K, 3, H, W) and their
    model-space `latents` (K, C, h, w), given frames in place)."""

    kind: str
    pixels: torch.Tensor | None = None
    latents: torch.Tensor | None = None

    def restoration(self, decoded: torch.Tensor, images: torch.Tensor, mask: FrameMask,
                    reconstruct: Callable[[torch.Tensor], torch.Tensor], kept: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, R(A)) of assemble.py: the flow frames and `reconstruct` of their latents (the generated ones
        but those `kept`, whose decoding and reconstruction are both left zero: A itself), else the neighbour
        blends of the given images and of their decodings (in `decoded`)."""
        if self.kind != "flow":
            return neighbour_anchor(decoded, images, mask)
        reconstruction = torch.zeros_like(decoded)
        generated = [k for k in mask.generated_indices if k not in kept]
        if generated:
            reconstruction[generated] = reconstruct(self.latents[generated]).to(reconstruction)
        return self.pixels, reconstruction


def window_anchor(vae, images: torch.Tensor, high: torch.Tensor, mask: FrameMask, config: MarDiniConfig,
                  interpolator: Interpolator | None) -> Anchor:
    """The one place a window's anchor is built, for every kind. images (S, 3, H, W) and their latents
    `high` (S, C, h, w), one per mask source; a flow anchor's generated frames are `interpolator`'s
    (interpolation/anchors.py), encoded."""
    if config.anchor != "flow":
        return Anchor(config.anchor)
    pixels = anchor_pixels(images, mask, interpolator)
    latents = arrange(mask, high)[0].clone()
    generated = list(mask.generated_indices)
    if generated:
        latents[generated] = encode_scaled(vae.encode, pixels[generated], config, vae.downscale, 1).to(latents)
    return Anchor("flow", pixels, latents)


def anchor_pixels(images: torch.Tensor, mask: FrameMask, interpolator: Interpolator) -> torch.Tensor:
    """A flow anchor's pixels (K, 3, H, W): the given images (S, 3, H, W) in place, the interpolator's frames between.
    Checked here, where a window's frames may come from them alone (`anchor_window`)."""
    clip = arrange(mask, images.float().cpu())[0]  # (K, 3, H, W)
    frames = anchor_frames(np.ascontiguousarray(clip.permute(0, 2, 3, 1).numpy()), list(mask.given), interpolator)
    if not np.isfinite(frames).all():
        raise InputError(f"the anchor's interpolator ({interpolator.name}) made NaN or infinite frames; "
                         "run it in float32, or choose another interpolator (the loader's interpolator, the CLI's --interpolator)")
    return torch.from_numpy(frames).permute(0, 3, 1, 2)


def interpolator_for(model, interpolator: Interpolator | None) -> Interpolator | None:
    """The interpolator a flow-anchored model's anchors use: the one given, else the default (interpolation/)
    on the generator's device; None for other models, which never load one."""
    if interpolator is not None or model.config.anchor != "flow":
        return interpolator
    return load_interpolator(device=network_device(model.generator))


@dataclass(frozen=True)
class Encoded:
    """The given frames of one window, ready to plan and sample: stage 1's output."""

    mask: FrameMask
    images: torch.Tensor  # (S, 3, H, W) in [0, 1] on the CPU, one per mask source
    high: torch.Tensor  # (S, C, h, w) model-space, the generator's scale
    low: torch.Tensor  # (S, C, h/f, w/f) the planner's scale (config.planner_downscale)
    anchor: Anchor


def encode(model, vae, images: torch.Tensor, mask: FrameMask, interpolator: Interpolator | None = None) -> Encoded:
    """Stage 1: images (S, 3, H, W) in [0, 1], one per mask source -> their latents at both scales and the anchor."""
    config = model.config
    check_vae(vae, config)
    mask.validate(config.max_frames)
    if images.shape[0] != mask.images_needed:
        raise InputError(f"mask {mask.pattern} takes {mask.images_needed} input images, got {images.shape[0]}")
    high, low = encode_frames(vae.encode, images, config, vae.downscale)
    anchor = window_anchor(vae, images, high, mask, config, interpolator_for(model, interpolator))
    return Encoded(mask, images.float().cpu(), high, low, anchor)


def checked_mask(windows: Sequence[Encoded], config: MarDiniConfig) -> FrameMask:
    """The one mask a batch of windows shares, after checking it and every window's latents (before any model call)."""
    if not windows or any(w.mask != windows[0].mask for w in windows):
        raise InputError("a batch of windows must share one mask; run windows of other masks one by one")
    mask = windows[0].mask.validate(config.max_frames)
    for w in windows:
        check_given_latents(w.high, w.low, config)
    return mask


def reads_plan(sampling: Sampling, mask: FrameMask, config: MarDiniConfig) -> bool:
    """Whether sampling a window of `mask` reads the planner's signal: not where its sample is its anchor
    whatever the networks say (settings.Resolved.keeps_anchor; the sampler then calls no network either)."""
    return not resolve(sampling, mask, config).keeps_anchor


def made_in_pixels(sampling: Sampling, mask: FrameMask, config: MarDiniConfig, restore_detail: bool) -> bool:
    """Whether a window's frames are its flow anchor's pixels whatever the networks say: its sample is the anchor's
    latents (`reads_plan` is false) and detail restoration puts each generated frame back as A + D(z) - R(A) = A.
    Such a window needs no latent at all (`anchor_window`): nothing is encoded, planned, sampled or decoded for it."""
    return restore_detail and config.anchor == "flow" and not reads_plan(sampling, mask, config)


def anchor_window(images: torch.Tensor, mask: FrameMask, interpolator: Interpolator) -> torch.Tensor:
    """The frames (K, 3, H, W) of a window `made_in_pixels`, from its given images (S, 3, H, W): what `assemble`
    makes of its sample, the given images exact and every generated frame kept (A + 0 - 0, clamped)."""
    pixels = anchor_pixels(images, mask, interpolator)
    nothing = torch.zeros_like(pixels)  # D(z) and R(A) of kept frames: never decoded (`anchor_kept`)
    return assemble_frames(nothing, images.float().cpu(), mask, (pixels, nothing))


def plan_for(model, windows: Sequence[Encoded], sampling: Sampling) -> torch.Tensor | None:
    """Stage 2 where stage 3 reads it (`reads_plan`), else None."""
    mask = checked_mask(windows, model.config)
    return plan(model, windows) if reads_plan(sampling, mask, model.config) else None


@torch.no_grad()
def plan(model, windows: Sequence[Encoded]) -> torch.Tensor:
    """Stage 2: the planner's signal, once per window and reused at every step -> (B, K, N, D)."""
    mask = checked_mask(windows, model.config)
    device = network_device(model.planner)
    low = torch.cat([arrange(mask, w.low) for w in windows])
    return model.planner(low.to(device), mask.to_tensor(len(windows)).to(device))


def sample(model, windows: Sequence[Encoded], signal: torch.Tensor | None, sampling: Sampling,
           seeds: Sequence[int] | None = None, hooks: Hooks = NO_HOOKS) -> torch.Tensor:
    """Stage 3: the generator's steps for planned windows of one mask -> model-space latents (B, K, C, h, w).

    `sampling` is resolved against the mask and the model (settings.resolve); window b draws its noise
    from its own generator seeded seeds[b] (default: sampling.seed), so it equals the window sampled
    alone with that seed."""
    config = model.config
    mask = checked_mask(windows, config)
    seeds = [sampling.seed] * len(windows) if seeds is None else list(seeds)
    if len(seeds) != len(windows):
        raise InputError(f"{len(seeds)} seeds for {len(windows)} windows; give one seed per window")
    for seed in seeds:
        check_seed(seed)
    flow = None
    if config.anchor == "flow":
        if any(w.anchor.kind != "flow" or w.anchor.latents.shape != (mask.frames, *w.high.shape[1:]) for w in windows):
            raise InputError("this flow-anchored model needs the window's flow anchor (window_anchor) beside the given latents")
        flow = torch.stack([w.anchor.latents for w in windows])
    device = network_device(model.generator)
    z = denoise(
        model, torch.cat([arrange(mask, w.high) for w in windows]).to(device), mask.to_tensor(len(windows)).to(device),
        None if signal is None else signal.to(device), resolve(sampling, mask, config),
        flow=None if flow is None else flow.to(device), generator=[torch.Generator().manual_seed(s) for s in seeds], hooks=hooks,
    )
    if not torch.isfinite(z).all():  # the inputs were checked finite above: the model or its settings overflowed
        raise InputError("the model produced NaN or infinite latents; lower the guidance, or check the checkpoint's weights")
    return z


def anchor_kept(window: Encoded, restore_detail: bool, latents: torch.Tensor, anchor_latents: torch.Tensor | None = None) -> list[int]:
    """Generated frames whose latents (K, ...) are their flow anchor's (`anchor_latents`, default the anchor's
    model-space ones: the anchor's latents in the form `latents` take). With detail restoration such a frame
    comes back as the anchor's pixels, A + D(z) - R(A) with D(z) = R(A), so neither is decoded (assemble.py)."""
    if not restore_detail or window.anchor.kind != "flow":
        return []
    reference = window.anchor.latents if anchor_latents is None else anchor_latents
    return [k for k in window.mask.generated_indices if torch.equal(latents[k], reference[k].to(latents))]


def frames_to_decode(mask: FrameMask, anchor: Anchor, restore_detail: bool, kept: Sequence[int] = ()) -> list[int]:
    """The window's frames whose latents are decoded: the generated ones but those `kept` (`anchor_kept`), and
    the given ones when detail restoration blends their decodings (a caller that has a frame's decoding can reuse it)."""
    generated = [k for k in mask.generated_indices if k not in kept]
    return generated + (list(mask.given_indices) if restore_detail and anchor.kind != "flow" else [])


def assemble(pixels: torch.Tensor, window: Encoded, restore_detail: bool,
             reconstruct: Callable[[torch.Tensor], torch.Tensor], kept: Sequence[int] = ()) -> torch.Tensor:
    """Stage 4's second half: the decodings `pixels` (D, 3, H, W) of `frames_to_decode`, in that order ->
    the window's frames (K, 3, H, W) on the CPU, given frames exact, generated ones put back around the
    anchor (those `kept` are the anchor's pixels); `reconstruct` decodes model-space latents (a flow anchor's R(A), assemble.py)."""
    mask, anchor = window.mask, window.anchor
    decoded = pixels.new_zeros(mask.frames, *window.images.shape[1:])
    if len(pixels):  # none where every generated frame is kept
        decoded[frames_to_decode(mask, anchor, restore_detail, kept)] = pixels
    if not restore_detail:
        return assemble_frames(decoded, window.images, mask)
    return assemble_frames(decoded, window.images, mask, anchor.restoration(decoded, window.images, mask, reconstruct, kept))


def decode(vae, latents: torch.Tensor, window: Encoded, config: MarDiniConfig, restore_detail: bool = True) -> torch.Tensor:
    """Stage 4: model-space latents (K, C, h, w) -> the window's frames (K, 3, H, W) in [0, 1] on the CPU."""
    reconstruct = lambda z: decode_frames(vae, z, config).cpu()
    kept = anchor_kept(window, restore_detail, latents)
    at = frames_to_decode(window.mask, window.anchor, restore_detail, kept)
    return assemble(reconstruct(latents[at]) if at else torch.zeros(0), window, restore_detail, reconstruct, kept)


@dataclass(frozen=True)
class Generation:
    """A generated window: pixels with the given frames pasted back exactly, and model-space latents."""

    frames: torch.Tensor  # (K, 3, H, W) float in [0, 1]
    latents: torch.Tensor  # (K, C, H/d, W/d) model-space
    mask: FrameMask
    anchor: Anchor


def generate(model, vae, images: torch.Tensor, mask: FrameMask, sampling: Sampling = Sampling(), *,
             hooks: Hooks = NO_HOOKS, restore_detail: bool = True, interpolator: Interpolator | None = None) -> Generation:
    """A whole window, the four stages in a row: images (S, 3, H, W) in [0, 1], one per mask source ->
    the clip of mask.frames. `restore_detail`: put generated frames back around their anchor in pixel
    space (assemble.py); `interpolator`: what makes a flow-anchored model's anchor (None: the default)."""
    window = encode(model, vae, images, mask, interpolator)
    latents = sample(model, [window], plan_for(model, [window], sampling), sampling, hooks=hooks)[0]
    return Generation(decode(vae, latents, window, model.config, restore_detail), latents.cpu(), mask, window.anchor)


def stop(hooks: Hooks, where: str) -> None:
    """Cancel between stages too, not only between steps."""
    if hooks.should_stop is not None and hooks.should_stop():
        raise GenerationInterrupted(f"generation stopped {where}")
