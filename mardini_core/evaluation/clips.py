"""Benchmark clips: which windows of which video files are evaluated, read at the evaluation size.

One window of `frames` consecutive frames per source, taken from the middle of the source so that
fade-ins at the start of a file (Big Buck Bunny opens with black frames) are avoided. A folder with
a `manifest.json` (a list of {"name", "file", "start_frame", "num_frames"}, as in the project's
shared clips) gives one source per cut-free segment; otherwise each video file is one source.
Frames are resized so the short side is `size`, then centre-cropped to multiples of the model's
spatial factor (VIDIM-Bench evaluates at 256 after resizing, too).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..video_io import IMAGE_SUFFIXES, _to_rgb_float, resize_and_crop

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".gif")


@dataclass(frozen=True)
class ClipSource:
    """A span of one video file: `count` frames from `first` (count None = to the end of the file)."""

    name: str
    path: Path
    first: int = 0
    count: int | None = None


def find_sources(paths: list[str]) -> list[ClipSource]:
    """Folders (their manifest, else their video files, sorted) and single video files -> sources."""
    sources: list[ClipSource] = []
    for given in map(Path, paths):
        if given.is_dir():
            manifest = given / "manifest.json"
            sources += _manifest_sources(manifest) if manifest.is_file() else [
                ClipSource(p.stem, p) for p in sorted(given.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES
            ]
        elif given.is_file():
            if given.suffix.lower() in IMAGE_SUFFIXES:
                raise InputError(f"{given} is an image; --clips takes video files or folders of videos")
            sources.append(ClipSource(given.stem, given))
        else:
            raise InputError(f"clip path {given} does not exist; give a folder of videos or video files")
    if not sources:
        raise InputError(f"no video files found in {', '.join(paths)}; give a folder with .mp4/.webm files or the files themselves")
    return sources


def _manifest_sources(manifest: Path) -> list[ClipSource]:
    try:
        rows = json.loads(manifest.read_text())
        return [ClipSource(r["name"], manifest.parent / r["file"], int(r["start_frame"]), int(r["num_frames"])) for r in rows]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest} is not a list of clips with name, file, start_frame, num_frames ({exc}); fix or remove it") from exc


def read_window(source: ClipSource, frames: int) -> np.ndarray:
    """The middle `frames` frames of the source -> (frames, H, W, 3) float RGB in [0, 1].

    Raises InputError when the file cannot be decoded or holds fewer frames.
    """
    capture = cv2.VideoCapture(str(source.path))
    try:
        if not capture.isOpened():
            raise InputError(f"cannot open {source.path} as a video; use a file OpenCV can decode")
        count = source.count if source.count is not None else int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        start = source.first + max(0, (count - frames) // 2)
        for _ in range(start):  # grab() decodes without converting: exact on every codec, unlike seeking
            if not capture.grab():
                break
        window = []
        while len(window) < frames:
            ok, frame = capture.read()
            if not ok:
                break
            window.append(_to_rgb_float(frame))
    finally:
        capture.release()
    if len(window) < frames:
        raise InputError(f"{source.name}: only {len(window)} frames readable from frame {start} of {source.path.name}, need {frames}")
    return np.stack(window)


def fit_size(height: int, width: int, size: int, multiple: int) -> tuple[int, int]:
    """(height, width) after scaling the short side to `size` and cropping to multiples of `multiple`."""
    scale = size / min(height, width)
    h, w = round(height * scale) // multiple * multiple, round(width * scale) // multiple * multiple
    if h == 0 or w == 0:
        raise InputError(f"--size {size} is below the model's spatial factor {multiple}; use --size {multiple} or more")
    return h, w


def load_clip(source: ClipSource, frames: int, size: int, multiple: int) -> np.ndarray:
    """The source's evaluation window at the evaluation size -> (frames, h, w, 3)."""
    window = read_window(source, frames)
    h, w = fit_size(*window.shape[1:3], size, multiple)
    return resize_and_crop(window, w, h)
