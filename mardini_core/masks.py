"""Frame masks: which frames of a clip are given and which are generated (every task is a mask).

A mask is written as a pattern string, one character per frame: `x` = given (a reference frame),
`.` = generated. Image-to-video is `x........`, interpolation `x.......x`, expansion `xxx......`.
Given frames take the input images in order; `sources` says which input image each given frame
shows, so a loop is `x.......x` with one image at both ends (`sources == (0, 0)`).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterable

import torch

from .errors import MaskError

GIVEN, GENERATED = "x", "."
POSITIONS = ("first", "middle", "last")
TASKS = ("i2v", "interpolate", "loop", "expand", "custom")
MAX_CLIP_FRAMES = 10_000  # longer requests (e.g. --frames 1000000000) would exhaust memory before any check


@dataclass(frozen=True)
class FrameMask:
    """Per-frame given/generated flags of one clip, plus the input image each given frame shows."""

    given: tuple[bool, ...]
    sources: tuple[int, ...] = ()  # input image index of each given frame; () = 0, 1, 2, ... in order

    def __post_init__(self) -> None:
        object.__setattr__(self, "given", tuple(bool(g) for g in self.given))
        count = sum(self.given)
        if not self.sources:
            object.__setattr__(self, "sources", tuple(range(count)))
        elif len(self.sources) != count:
            raise MaskError(f"mask {self.pattern} has {count} given frames but {len(self.sources)} image sources")

    @property
    def frames(self) -> int:
        return len(self.given)

    @property
    def pattern(self) -> str:
        return "".join(GIVEN if g else GENERATED for g in self.given)

    @property
    def given_indices(self) -> tuple[int, ...]:
        return tuple(i for i, g in enumerate(self.given) if g)

    @property
    def generated_indices(self) -> tuple[int, ...]:
        return tuple(i for i, g in enumerate(self.given) if not g)

    @property
    def images_needed(self) -> int:
        """How many distinct input images the given frames show."""
        return max(self.sources, default=-1) + 1

    def __str__(self) -> str:
        return self.pattern

    def validate(self, max_frames: int | None = None, require_reference: bool = True) -> "FrameMask":
        """Raise MaskError if the model cannot run this mask; returns self so calls can chain."""
        if self.frames == 0:
            raise MaskError("the frame mask is empty; give at least two frames, e.g. 'x........'")
        if all(self.given):
            raise MaskError(f"mask {self.pattern} has no frame to generate; mark frames to generate with '.'")
        if require_reference and not any(self.given):
            raise MaskError(
                f"mask {self.pattern} has no reference frame; mark the frames you provide with 'x' (e.g. 'x{'.' * (self.frames - 1)}')"
            )
        if max_frames is not None and self.frames > max_frames:
            raise MaskError(
                f"mask of {self.frames} frames exceeds the model's window of {max_frames}; "
                "for longer clips use MarDini Long Video in ComfyUI or `generate --frames N` (it runs windows itself), or shorten the mask"
            )
        return self

    def to_tensor(self, batch: int = 1, device: torch.device | str | None = None) -> torch.Tensor:
        """(B, K) bool, True = frame to generate (the model's `masked` argument)."""
        row = torch.tensor([not g for g in self.given], dtype=torch.bool, device=device)
        return row.expand(batch, -1).clone()


def from_pattern(pattern: str) -> FrameMask:
    """Parse a pattern such as `x.......x` (`X` also means given; whitespace is ignored)."""
    if not isinstance(pattern, str):
        raise MaskError(f"a frame pattern must be text such as 'x.......x', got {pattern!r}")
    text = "".join(pattern.split())
    bad = sorted({c for c in text if c not in "xX."})
    if bad:
        raise MaskError(
            f"frame pattern {pattern!r} has invalid characters {''.join(bad)!r}; "
            "use 'x' for a given frame and '.' for a generated one, e.g. 'x.......x'"
        )
    return FrameMask(tuple(c in "xX" for c in text))


def from_indices(frames: int, given: Iterable[int]) -> FrameMask:
    """Mask of `frames` frames with the listed frames given (negative indices count from the end)."""
    _check_frames(frames)
    flags = [False] * frames
    for index in given:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not -frames <= index < frames:
            raise MaskError(
                f"given frame index {index!r} is not a frame of a {frames}-frame clip; "
                f"use an integer in 0..{frames - 1} (negative ones count from the end)"
            )
        flags[int(index)] = True
    return FrameMask(tuple(flags))


def image_to_video(frames: int, position: str | int = "first") -> FrameMask:
    """One reference image at `position` ("first", "middle", "last" or an index), the rest generated."""
    _check_frames(frames)
    named = {"first": 0, "middle": frames // 2, "last": frames - 1}
    if isinstance(position, str):
        if position not in named:
            raise MaskError(f"image position {position!r} is unknown; use one of {', '.join(POSITIONS)} or a frame index")
        position = named[position]
    return from_indices(frames, [position])


def interpolation(frames: int, images: int = 2) -> FrameMask:
    """`images` input images spread evenly, first and last included; everything between generated."""
    _check_frames(frames, minimum=3)
    if not _is_count(images) or not 2 <= images < frames:
        raise MaskError(f"interpolation needs between 2 and {frames - 1} images for {frames} frames, got {images}")
    return from_indices(frames, [round(i * (frames - 1) / (images - 1)) for i in range(images)])


def loop(frames: int) -> FrameMask:
    """A loop: the same input image as first and last frame, everything between generated."""
    _check_frames(frames, minimum=3)
    return FrameMask(interpolation(frames).given, sources=(0, 0))


def expansion(frames: int, given_count: int) -> FrameMask:
    """Video continuation: the first `given_count` frames given, the rest generated."""
    _check_frames(frames)
    if not _is_count(given_count) or not 1 <= given_count < frames:
        raise MaskError(f"expansion needs between 1 and {frames - 1} given frames for a {frames}-frame clip, got {given_count}")
    return from_indices(frames, range(given_count))


def for_task(task: str, frames: int, *, images: int = 1, position: str | int = "first", pattern: str | None = None) -> FrameMask:
    """The mask of a named task (the CLI's and the nodes' `--task`) for `images` input images.

    i2v and loop use one image; interpolate spreads the images evenly; expand gives them as the
    first frames; custom reads `pattern` (whose given frames take the images in order).
    """
    if task == "custom":
        if not pattern:
            raise MaskError("the custom task needs a frame pattern, e.g. --pattern 'x...x...x'")
        return from_pattern(pattern)
    if not _is_count(images):
        raise MaskError(f"the number of input images must be an integer, got {images!r}")
    builders = {
        "i2v": lambda: image_to_video(frames, position),
        "interpolate": lambda: interpolation(frames, max(images, 2)),
        "loop": lambda: loop(frames),
        "expand": lambda: expansion(frames, images),
    }
    if task not in builders:
        raise MaskError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return builders[task]()


def _is_count(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_frames(frames: int, minimum: int = 2) -> None:
    if not isinstance(frames, int) or frames < minimum:
        raise MaskError(f"a clip needs at least {minimum} frames for this task, got {frames!r}")
    if frames > MAX_CLIP_FRAMES:
        raise MaskError(f"a clip of {frames} frames is too long; at most {MAX_CLIP_FRAMES} frames can be generated in one run")
