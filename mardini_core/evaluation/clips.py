"""Benchmark clips: which window of which video is evaluated, read at the evaluation size.

The segments come from the training data's `find_segments` (a folder's manifest.json gives one
segment per cut-free shot, otherwise each video file is one; unreadable files are skipped with a
message). From each segment the middle `frames` consecutive frames are evaluated, which avoids
fade-ins at the start of a file (Big Buck Bunny opens with black frames). Frames are resized so
the short side is `size`, then centre-cropped to multiples of the model's spatial factor
(VIDIM-Bench evaluates at 256 after resizing, too).
"""
from __future__ import annotations

import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..data import Segment, find_segments, read_frames
from ..errors import InputError
from ..video_io import resize_and_crop


@dataclass(frozen=True)
class ClipSource:
    name: str  # the manifest's name, else the file's stem (plus the first frame where a file holds several segments)
    segment: Segment


def find_sources(paths: list[str]) -> tuple[list[ClipSource], list[str]]:
    """Folders and video files -> (segments to evaluate, one message per unreadable file)."""
    with warnings.catch_warnings():  # the caller reports skipped files itself, once
        warnings.simplefilter("ignore")
        segments, skipped = find_segments(paths)
    per_file = Counter(s.path for s in segments)
    sources = [ClipSource(s.name or (s.path.stem if per_file[s.path] == 1 else f"{s.path.stem}_{s.start}"), s) for s in segments]
    if not sources and not skipped:
        raise InputError(f"no video files found in {', '.join(map(str, paths))}; give a folder with .mp4/.webm files or the files themselves")
    return sources, skipped


def fit_size(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to `size` and cropping to multiples of `multiple`."""
    scale = size / min(height, width)
    h, w = round(height * scale) // multiple * multiple, round(width * scale) // multiple * multiple
    if h == 0 or w == 0:
        raise InputError(f"--size {size} is below the model's spatial factor {multiple}; use --size {multiple} or more")
    return h, w


def load_clip(source: ClipSource, frames: int, size: int, multiple: int) -> np.ndarray:
    """The middle `frames` frames of the source at the evaluation size -> (frames, h, w, 3) float in [0, 1].

    Raises InputError when the segment is shorter than `frames` or does not decode.
    """
    segment = source.segment
    if segment.frames < frames:
        raise InputError(f"{segment.path.name} has {segment.frames} frames from frame {segment.start}, fewer than the {frames} evaluated")
    window = read_frames(segment.path, segment.start + (segment.frames - frames) // 2, frames).astype(np.float32) / 255
    h, w = fit_size(*window.shape[1:3], size, multiple)
    return resize_and_crop(window, w, h)
