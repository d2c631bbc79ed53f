"""A dataset of fixed-length clips over video files: high-resolution frames plus the planner's low view.

Clip i is frames start, start+stride, ... of one segment; clip starts are `hop` frames apart. Each
clip is resized so its short side covers the crop, then center- or randomly cropped (the random
offset depends only on the seed, the clip and the `variant` the caller passes, so runs repeat).
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Iterable

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from ..errors import ConfigError, InputError
from .sources import Segment, find_segments
from .video import read_indices


@dataclass(frozen=True)
class ClipConfig:
    frames: int = 9  # K
    stride: int = 1  # take every stride-th frame (lower frame rate)
    height: int = 256
    width: int = 256
    crop: str = "center"  # "center" | "random"
    hop: int = 0  # frames between clip starts; 0 = one clip length (frames * stride), no overlap
    planner_downscale: int = 2  # the low view is the clip shrunk by this factor (box filter)

    def __post_init__(self) -> None:
        if self.crop not in ("center", "random"):
            raise ConfigError(f"crop must be 'center' or 'random', got {self.crop!r}")
        for name in ("frames", "stride", "height", "width", "planner_downscale"):
            if getattr(self, name) < 1:
                raise ConfigError(f"clip {name} must be >= 1, got {getattr(self, name)}")
        if self.height % (8 * self.planner_downscale) or self.width % (8 * self.planner_downscale):
            raise ConfigError(
                f"clip size {self.width}x{self.height} must be a multiple of {8 * self.planner_downscale} "
                "(VAE factor 8 times planner_downscale) on both sides"
            )

    @property
    def span(self) -> int:
        return (self.frames - 1) * self.stride + 1


@dataclass(frozen=True)
class ClipRef:
    segment: Segment
    start: int  # absolute frame index in the file


def _clip_refs(segments: list[Segment], cfg: ClipConfig) -> list[ClipRef]:
    hop = cfg.hop or cfg.frames * cfg.stride
    return [ClipRef(s, s.start + o) for s in segments for o in range(0, s.frames - cfg.span + 1, hop)]


def resize_crop(frames: np.ndarray, height: int, width: int, offset: tuple[float, float]) -> np.ndarray:
    """(K, H0, W0, 3) uint8 -> (K, height, width, 3): scale to cover, crop at fractional offset (0.5 = center)."""
    h0, w0 = frames.shape[1:3]
    scale = max(height / h0, width / w0)
    h1, w1 = max(height, round(h0 * scale)), max(width, round(w0 * scale))
    top, left = round((h1 - height) * offset[0]), round((w1 - width) * offset[1])
    return np.stack([cv2.resize(f, (w1, h1), interpolation=cv2.INTER_AREA)[top : top + height, left : left + width] for f in frames])


def low_view(high: torch.Tensor, factor: int) -> torch.Tensor:
    """(K, 3, H, W) -> (K, 3, H/factor, W/factor) by box filter, as the generation pipeline does."""
    return F.interpolate(high, scale_factor=1 / factor, mode="area") if factor > 1 else high


class VideoClips:
    """Clips of K frames from a folder (or list) of videos; unreadable files are warned about and skipped.

    Frame counts come from the containers' headers, so opening a large folder decodes nothing; the rare
    clip a header over-counts raises VideoReadError when it is read (the trainer and `encode` skip it)."""

    def __init__(self, paths: Iterable[str | os.PathLike] | str | os.PathLike, config: ClipConfig, seed: int = 0, exclude: frozenset[str] = frozenset()):
        paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        self.config, self.seed = config, seed
        segments, self.skipped = find_segments(paths, exact=False)
        segments = [s for s in segments if s.path.name not in exclude]  # file names held out
        self.clips = _clip_refs(segments, config)
        if not self.clips:
            raise InputError(
                f"no clip of {config.frames} frames at stride {config.stride} fits in {', '.join(map(str, paths))}; "
                "add longer videos or lower frames/stride"
            )

    def __len__(self) -> int:
        return len(self.clips)

    def key(self, index: int, variant: int = 0) -> str:
        """What identifies clip `index` (for caches): file, frames, size, crop."""
        ref, c = self.clips[index], self.config
        stat = ref.segment.path.stat()
        crop = f"random{self.seed}.{variant}" if c.crop == "random" else "center"
        return f"{ref.segment.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ref.start}|{c.frames}x{c.stride}|{c.height}x{c.width}|{crop}|{c.planner_downscale}"

    def _offset(self, index: int, variant: int) -> tuple[float, float]:
        if self.config.crop == "center":
            return (0.5, 0.5)
        rng = random.Random(f"{self.seed}/{index}/{variant}")
        return (rng.random(), rng.random())

    def indices(self, index: int) -> list[int]:
        """The frame numbers in the file that clip `index` is made of."""
        ref, c = self.clips[index], self.config
        return list(range(ref.start, ref.start + c.frames * c.stride, c.stride))

    def load(self, index: int, variant: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (high (K, 3, H, W), low (K, 3, H/d, W/d)) float32 in [0, 1]."""
        return self.view(index, read_indices(self.clips[index].segment.path, self.indices(index)), variant)

    def view(self, index: int, frames: np.ndarray, variant: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Clip `index`'s (high, low) from its decoded frames (K, H0, W0, 3) uint8: resized, cropped, low view."""
        c = self.config
        frames = resize_crop(frames, c.height, c.width, self._offset(index, variant))
        high = rearrange(torch.from_numpy(frames), "k h w c -> k c h w").float() / 255
        return high, low_view(high, c.planner_downscale)
