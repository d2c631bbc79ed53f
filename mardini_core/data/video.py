"""Reading frame ranges of video files as uint8 RGB, with OpenCV (PyAV only as a fallback if installed).

Frames are reached by decoding from the start (`grab`), not by seeking: seeking is frame-inexact in
many containers (.webm especially), and a clip must be the same frames on every run and every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from .. import opencv_paths
from ..errors import InputError
from ..video_io import header_frames

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".mpg", ".mpeg", ".ogv")


class VideoReadError(InputError):
    """A video file cannot be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    path: Path
    frames: int
    fps: float
    width: int
    height: int


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise VideoReadError(f"video {path} does not exist; check the path")
    with opencv_paths.for_reading(path) as name:
        cap = cv2.VideoCapture(name)  # opened now: the name may go once it is
    if not cap.isOpened():
        cap.release()
        raise VideoReadError(f"OpenCV cannot open {path}; re-encode it (e.g. ffmpeg -i in -c:v libx264 out.mp4) or install PyAV")
    return cap


def _av_decode(path: Path, keep: set[int], count_all: bool = False) -> tuple[int, dict[int, np.ndarray]]:
    """(frames decoded, {index: RGB frame} for indices in `keep`) with PyAV; stops once all are found
    unless `count_all`. Only the frames asked for are kept in memory."""
    import av  # optional: only reached when OpenCV cannot read the file and PyAV is installed

    frames, count = {}, 0
    try:
        with av.open(str(path)) as container:
            for count, frame in enumerate(container.decode(video=0), start=1):
                if count - 1 in keep:
                    frames[count - 1] = frame.to_ndarray(format="rgb24")
                if not count_all and len(frames) == len(keep):
                    break
    except Exception as exc:  # PyAV's error types vary by version; any failure means the file is unusable
        raise VideoReadError(f"neither OpenCV nor PyAV can decode {path} ({type(exc).__name__}: {exc}); re-encode it") from exc
    return count, frames


def _pyav_installed() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def probe(path: str | os.PathLike, exact: bool = True) -> VideoInfo:
    """Frame count, fps and size; VideoReadError if unusable. `exact` counts frames by decoding (container
    headers lie by a frame or two in .mkv/.webm); otherwise the header's count is taken when it has one,
    so a folder of long videos opens in milliseconds and a clip past the true end fails when read."""
    path = Path(path)
    try:
        cap = _open(path)
    except VideoReadError:
        if not (path.is_file() and _pyav_installed()):
            raise
        count, first = _av_decode(path, {0}, count_all=True)
        if count == 0:
            raise
        return VideoInfo(path, count, 0.0, first[0].shape[1], first[0].shape[0])
    try:
        fps, width, height = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        count = 0 if exact else header_frames(cap.get(cv2.CAP_PROP_FRAME_COUNT), path)
        if count == 0:  # asked to count, or a header without a count
            while cap.grab():
                count += 1
    finally:
        cap.release()
    if count == 0 or width == 0 or height == 0:
        raise VideoReadError(f"{path} has no decodable video frames; re-encode it or remove it from the data folder")
    return VideoInfo(path, count, fps, width, height)


def iter_frames(path: str | os.PathLike, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, (H, W, 3) uint8 RGB) for each distinct index, ascending, in one decoding pass that holds one
    frame at a time (a long video streams); indices past the end are simply not yielded."""
    path = Path(path)
    wanted = sorted(set(indices))
    try:
        cap = _open(path)
    except VideoReadError:
        if not (path.is_file() and _pyav_installed()):
            raise
        yield from sorted(_av_decode(path, set(wanted))[1].items())
        return
    try:
        index = 0
        for target in wanted:
            while index < target and cap.grab():
                index += 1
            if index < target or not cap.grab():
                return
            ok, bgr = cap.retrieve()
            if not ok:
                return
            index += 1
            yield target, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def read_indices(path: str | os.PathLike, indices: list[int]) -> np.ndarray:
    """Frames at the given indices (any order, repeats allowed), in one decoding pass -> (N, H, W, 3) uint8 RGB."""
    decoded = dict(iter_frames(path, indices))
    missing = [i for i in indices if i not in decoded]
    if missing:
        raise VideoReadError(f"{path}: frames {missing[:5]} of the {len(indices)} asked for do not decode; the file is shorter or damaged")
    return np.stack([decoded[i] for i in indices])


def read_frames(path: str | os.PathLike, start: int, count: int, stride: int = 1) -> np.ndarray:
    """Frames start, start+stride, ... (count of them) -> (count, H, W, 3) uint8 RGB; VideoReadError if short."""
    return read_indices(path, list(range(start, start + count * stride, stride)))
