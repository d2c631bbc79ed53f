"""Hierarchical auto-regressive generation (paper Appendix F.1): clips longer than the model's window.

The schedule of model calls is a pure function of the request, so it can be printed before anything
runs. Known frames (the inputs, then everything generated so far) are filled in levels:

1. gaps between known frames: a gap that fits one window is interpolated in one call (neighbouring
   small gaps share a window); a wider gap first gets a window of evenly strided keyframes with its
   two ends given, and the new keyframes split it into smaller gaps for the next level (so 4 images
   become 128 slow-motion frames through keyframes, then interpolation between neighbours);
2. frames after the last / before the first known frame: overlapping contiguous windows, each
   continuing from `overlap` known frames (video expansion, forwards then backwards).

Every window asks the model for at most its window of frames and gives it at least one frame; the
planner runs once per window (windows of one level with one mask are planned and sampled together).
No frame is encoded or decoded twice, and a frame no later window gives is not encoded at all. A window
whose frames are its anchor's whatever the networks say (window.made_in_pixels: between given frames, the
embedded model's) is made in pixel space and encodes nothing; a later window that gives one of its
frames encodes that frame then.
A loop is the gap between an image and itself one period later.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import InputError, MaskError
from ..masks import FrameMask
from .latents import check_vae, decode_frames, encode_scaled, network_device
from .settings import NO_HOOKS, Hooks, Sampling
from .window import (
    Encoded, anchor_window, assemble, frames_to_decode, interpolator_for, made_in_pixels, plan_for, sample, stop,
    window_anchor,
)


@dataclass(frozen=True)
class Window:
    """One model call: the global frame indices it covers and which of them are already known."""

    frames: tuple[int, ...]  # global frame indices, increasing (strided for keyframe windows)
    given: tuple[int, ...]  # the subset of `frames` known before this call
    level: int
    kind: str  # "interpolate", "keyframes", "extend forward", "extend backward"

    @property
    def mask(self) -> FrameMask:
        known = set(self.given)
        return FrameMask(tuple(f in known for f in self.frames))

    @property
    def generated(self) -> tuple[int, ...]:
        known = set(self.given)
        return tuple(f for f in self.frames if f not in known)

    def __str__(self) -> str:
        span = f"frames {self.frames[0]}..{self.frames[-1]}"
        steps = {b - a for a, b in zip(self.frames, self.frames[1:])}
        if steps != {1}:
            span += f" every ~{(self.frames[-1] - self.frames[0]) / (len(self.frames) - 1):.1f}"
        return f"level {self.level} {self.kind:<15} {span:<28} {self.mask.pattern}"


@dataclass(frozen=True)
class WindowSchedule:
    """The whole schedule: `total` output frames, the input positions, and the windows in run order."""

    total: int
    inputs: tuple[int, ...]
    window: int
    windows: tuple[Window, ...]

    def __iter__(self):
        return iter(self.windows)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index):
        return self.windows[index]

    def describe(self) -> str:
        head = (
            f"{self.total} frames from {len(self.inputs)} given at {list(self.inputs)}, "
            f"window {self.window}: {len(self.windows)} model call(s)"
        )
        return "\n".join([head, *(f"  {i + 1:>3}. {w}" for i, w in enumerate(self.windows))])

    __str__ = describe


def schedule_windows(total: int, inputs: Sequence[int], window: int, overlap: int | None = None) -> WindowSchedule:
    """Schedule windows that generate frames 0..total-1 from known frames at `inputs` positions.

    `overlap`: known frames each expansion window continues from (default a quarter of the window).
    """
    overlap = max(1, window // 4) if overlap is None else overlap
    if window < 3:
        raise MaskError(f"hierarchical generation needs a model window of at least 3 frames, got {window}")
    if not 1 <= overlap < window:
        raise MaskError(f"overlap must be between 1 and {window - 1} frames for a window of {window}, got {overlap}")
    known = sorted(set(inputs))
    if not known:
        raise MaskError("hierarchical generation needs at least one given frame")
    if known[0] < 0 or known[-1] >= total:
        raise MaskError(f"given frame positions {known} must lie within 0..{total - 1}")
    if len(known) == total:
        raise MaskError(f"all {total} frames are given; there is nothing to generate")
    windows: list[Window] = []
    level = 0
    while True:
        batch = _gap_windows(known, window, level)
        if not batch:
            break
        windows += batch
        known = sorted(set(known).union(*(w.frames for w in batch)))
        level += 1
    for forward in (True, False):
        while (known[-1] < total - 1) if forward else (known[0] > 0):
            w = _extension_window(known, total, window, overlap, forward, level)
            windows.append(w)
            known = sorted(set(known).union(w.frames))
            level += 1
    return WindowSchedule(total=total, inputs=tuple(sorted(set(inputs))), window=window, windows=tuple(windows))


def _gap_windows(known: list[int], window: int, level: int) -> list[Window]:
    """One level of gap filling: contiguous windows over nearby known frames, strided ones over wide gaps."""
    windows, i = [], 0
    while i < len(known) - 1:
        start, j = known[i], i
        while j + 1 < len(known) and known[j + 1] - start + 1 <= window:
            j += 1
        if j > i:
            end = known[j]
            if end - start > j - i:  # some frame between start and end is unknown
                windows.append(Window(tuple(range(start, end + 1)), tuple(known[i : j + 1]), level, "interpolate"))
            i = j
        else:  # the next known frame is further than one window: strided keyframes across the gap
            end = known[i + 1]
            frames = tuple(start + round(n * (end - start) / (window - 1)) for n in range(window))
            windows.append(Window(frames, (start, end), level, "keyframes"))
            i += 1
    return windows


def _extension_window(known: list[int], total: int, window: int, overlap: int, forward: bool, level: int) -> Window:
    """The next contiguous window past the last (or before the first) known frame, with `overlap` context."""
    if forward:
        start = max(0, min(known[-1] + 1 - overlap, total - window))
        frames = tuple(range(start, min(total, start + window)))
    else:
        end = min(total - 1, max(known[0] - 1 + overlap, window - 1))
        frames = tuple(range(max(0, end - window + 1), end + 1))
    given = tuple(f for f in frames if f in set(known))
    return Window(frames, given, level, "extend forward" if forward else "extend backward")


class KnownFrames:
    """The frames known so far, by global index, with each frame's latents and decoding made at most once.

    A generated frame keeps the DM latent it was sampled as (no VAE round trip); a frame's planner
    latent (and the DM latent of an input or of a frame made in pixels) is encoded from its pixels, and
    its decoding made, when a window first gives it: frames no later window gives are never encoded.
    (A frame made in pixels is its anchor A, whose DM latent E(A) is what the window would have sampled.)
    """

    def __init__(self, vae, config, schedule: WindowSchedule, images: torch.Tensor):
        self.vae, self.config = vae, config
        self.pixels = {p: images[n].float().cpu() for n, p in enumerate(schedule.inputs)}  # index -> (3, H, W)
        self.high: dict[int, torch.Tensor] = {}  # index -> (C, H/d, W/d) model-space, the DM's scale
        self.low: dict[int, torch.Tensor] = {}  # index -> the planner's scale
        self.decoded: dict[int, torch.Tensor] = {}  # index -> decoding of its DM latent (3, H, W)
        self.reread = {p for w in schedule for p in w.given}  # only these frames' decodings are worth keeping

    def given(self, w: Window) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The window's given frames: pixels (S, 3, H, W) and model-space latents at both scales."""
        for store, factor in ((self.high, 1), (self.low, self.config.planner_downscale)):
            missing = [p for p in w.given if p not in store]
            if missing:
                images = torch.stack([self.pixels[p] for p in missing])
                store.update(zip(missing, encode_scaled(self.vae.encode, images, self.config, self.vae.downscale, factor)))
        return (self.given_pixels(w), *(torch.stack([store[p] for p in w.given]) for store in (self.high, self.low)))

    def decodings(self, w: Window, latents: torch.Tensor, indices: list[int]) -> torch.Tensor:
        """Decodings (D, 3, H, W) of the window's frames at `indices`, from `latents` (K, C, h, w),
        each frame decoded once over the whole schedule."""
        missing = [n for n in indices if w.frames[n] not in self.decoded]
        fresh = dict(zip(missing, decode_frames(self.vae, latents[missing], self.config).cpu())) if missing else {}
        self.decoded.update((w.frames[n], d) for n, d in fresh.items() if w.frames[n] in self.reread)
        return torch.stack([fresh[n] if n in fresh else self.decoded[w.frames[n]] for n in indices])

    def given_pixels(self, w: Window) -> torch.Tensor:
        """The window's given frames' pixels (S, 3, H, W), without their latents."""
        return torch.stack([self.pixels[p] for p in w.given])

    def add(self, w: Window, pixels: torch.Tensor, latents: torch.Tensor | None = None) -> None:
        """Record the window's generated frames: pixels (K, 3, H, W) and latents (K, C, h, w), none for a window
        made in pixels."""
        for n in w.mask.generated_indices:
            self.pixels[w.frames[n]] = pixels[n]
            if latents is not None:
                self.high[w.frames[n]] = latents[n]


def batches(schedule: WindowSchedule, size: int) -> list[list[int]]:
    """Indices of windows that run as one batch: the windows of one level with one mask (none of them
    gives a frame another generates), at most `size` together, in the order of their first window."""
    groups: dict[tuple[int, str], list[list[int]]] = {}
    for i, w in enumerate(schedule):
        chunks = groups.setdefault((w.level, w.mask.pattern), [[]])
        if len(chunks[-1]) == size:
            chunks.append([])
        chunks[-1].append(i)
    return sorted((chunk for chunks in groups.values() for chunk in chunks), key=lambda chunk: chunk[0])


def window_batch(device: torch.device) -> int:
    """Windows of a long schedule sampled together: on a CPU batching gains nothing and delays progress
    and cancelling by a whole batch, so one at a time; on a GPU four fill it better."""
    return 4 if device.type == "cuda" else 1


def run_schedule(
    schedule: WindowSchedule,
    model,
    vae,
    images: torch.Tensor,
    sampling: Sampling = Sampling(),
    *,
    hooks: Hooks = NO_HOOKS,
    restore_detail: bool = True,
    batch: int | None = None,
    interpolator=None,
) -> torch.Tensor:
    """Execute a schedule: images (len(inputs), 3, H, W) for the input positions -> (total, 3, H, W).

    The stages of window.py, window after window: known frames keep their high-resolution latents
    exactly (no VAE round trip); the planner's low-resolution latents of generated frames are encoded
    from their finished pixels. Window i is seeded with sampling.seed + i and gets the model's defaults
    for its own mask; windows of one level with one mask run `batch` at a time in one planner and one
    sampler call, with the same result as one by one (`hooks.window(i, w)` is called for each window of
    a batch before it runs; default `window_batch` of the generator's device). `restore_detail` and
    `interpolator` as in `window.generate`.
    """
    config = model.config
    if images.shape[0] != len(schedule.inputs):
        raise InputError(f"the schedule places {len(schedule.inputs)} input images but {images.shape[0]} were given")
    if any(len(w.frames) > config.max_frames for w in schedule):
        raise MaskError(f"the schedule's window of {schedule.window} frames exceeds the model's {config.max_frames}")
    batch = window_batch(network_device(model.generator)) if batch is None else batch
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be a positive number of windows, got {batch!r}")
    check_vae(vae, config)
    known = KnownFrames(vae, config, schedule, images)
    interpolator = interpolator_for(model, interpolator)
    for indices in batches(schedule, batch):
        for i in indices:
            if hooks.window is not None:
                hooks.window(i, schedule[i])
        stop(hooks, f"before window {indices[0] + 1} of {len(schedule)}")
        if made_in_pixels(sampling, schedule[indices[0]].mask, config, restore_detail):  # one mask per batch
            for i in indices:
                known.add(schedule[i], anchor_window(known.given_pixels(schedule[i]), schedule[i].mask, interpolator))
                if hooks.step is not None:
                    hooks.step(1, 1, None)  # one pass, as the sampler reports a kept window; no latents to preview
            continue
        given = [(schedule[i].mask, known.given(schedule[i])) for i in indices]
        stop(hooks, "after encoding")
        windows = [Encoded(mask, pixels, high, low, window_anchor(vae, pixels, high, mask, config, interpolator))
                   for mask, (pixels, high, low) in given]
        stop(hooks, "after the anchor")
        latents = sample(model, windows, plan_for(model, windows, sampling), sampling, [sampling.seed + i for i in indices], hooks)
        for i, window, z in zip(indices, windows, latents):  # (a window whose sample is its anchor was made in pixels)
            w = schedule[i]
            decoded = known.decodings(w, z, frames_to_decode(w.mask, window.anchor, restore_detail))
            stop(hooks, "after decoding")
            known.add(w, assemble(decoded, window, restore_detail, lambda anchor: decode_frames(vae, anchor, config).cpu()), z)
    return torch.stack([known.pixels[p] for p in range(schedule.total)])
