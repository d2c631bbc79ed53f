"""Every frame of a video folder decoded once into memory; clips drawn from it with fresh crops each step.

The latent cache (latents.py) encodes each clip once, which fixes its crop and frame rate for the
whole run. A GPU trains faster than videos decode, and a small data set needs every variation it can
get, so this bank decodes each segment once (files in one pass each, frames shrunk so the short side
is `side`) and a clip is drawn per step: a random segment (by length), start, stride in
[stride, stride_max], crop and horizontal flip. Optionally a clip is replaced by synthetic motion
over one of its frames (synthetic.py). Memory: side 144 holds about 100 kB a frame.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable

import cv2
import numpy as np
import torch

from .. import opencv_paths
from ..errors import InputError
from ..memory import check_fits
from .sources import find_segments
from .split import HELD_OUT_FILES
from .video import iter_frames


class FrameBank:
    def __init__(self, paths: Iterable[str | os.PathLike], side: int, frames: int, held_out: bool = False):
        segments, self.skipped = find_segments(paths, exact=False)  # header counts: each file is decoded once, below
        if held_out:
            segments = [s for s in segments if s.path.name not in HELD_OUT_FILES]
        self.frames = frames
        self.segments: list[np.ndarray] = []  # (N, h, w, 3) uint8 per segment
        by_file: dict = {}
        for s in segments:
            by_file.setdefault(s.path, []).append(s)
        sizes = {path: frame_size(path) for path in by_file}
        check_fits(sum(s.frames * _shrunk_bytes(sizes[s.path], side) for s in segments), "the decoded training videos",
                   "train on fewer or shorter videos, lower [data] height/width, or use [data] loader = \"latents\"")

        def decode(parts: list) -> list[np.ndarray]:
            """Each segment's frames, shrunk as they decode (a segment ends early where its header over-counted)."""
            wanted = [i for s in parts for i in range(s.start, s.start + s.frames)]
            shrunk = {i: _shrink(f, side) for i, f in iter_frames(parts[0].path, wanted)}
            segments = [[shrunk[i] for i in range(s.start, s.start + s.frames) if i in shrunk] for s in parts]
            return [np.stack(frames) for frames in segments if frames]

        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # OpenCV decodes without the GIL
            for decoded in pool.map(decode, by_file.values()):
                self.segments += decoded
        self.segments = [s for s in self.segments if len(s) >= frames]
        if not self.segments:
            raise InputError(f"no segment of the data holds {frames} frames; add longer videos or lower [data] frames")
        self.lengths = torch.tensor([float(len(s)) for s in self.segments])

    def __len__(self) -> int:
        return len(self.segments)

    def clip(self, height: int, width: int, stride: tuple[int, int], gen: torch.Generator) -> np.ndarray:
        """One random clip (K, height, width, 3) uint8: segment by length, stride, start, crop, flip."""
        seg = self.segments[int(torch.multinomial(self.lengths, 1, generator=gen))]
        k = self.frames
        s_max = max(stride[0], min(stride[1], (len(seg) - 1) // max(1, k - 1)))
        s = int(torch.randint(stride[0], s_max + 1, (1,), generator=gen)) if len(seg) > (k - 1) * stride[0] else 1
        start = int(torch.randint(0, len(seg) - (k - 1) * s, (1,), generator=gen))
        clip = seg[start : start + (k - 1) * s + 1 : s]
        h0, w0 = clip.shape[1:3]
        if h0 < height or w0 < width:
            scale = max(height / h0, width / w0)
            clip = np.stack([cv2.resize(f, (max(width, round(w0 * scale)), max(height, round(h0 * scale))), interpolation=cv2.INTER_LINEAR) for f in clip])
            h0, w0 = clip.shape[1:3]
        top = int(torch.randint(0, h0 - height + 1, (1,), generator=gen))
        left = int(torch.randint(0, w0 - width + 1, (1,), generator=gen))
        clip = clip[:, top : top + height, left : left + width]
        if torch.rand((), generator=gen) < 0.5:
            clip = clip[:, :, ::-1]
        if torch.rand((), generator=gen) < 0.5:  # time reversed: motion the other way is as likely
            clip = clip[::-1]
        return np.ascontiguousarray(clip)


def frame_size(path) -> tuple[int, int]:
    """(height, width) of a video's frames from its header (no decoding; 0 x 0 when OpenCV cannot say)."""
    with opencv_paths.for_reading(path) as name:
        cap = cv2.VideoCapture(name)
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    finally:
        cap.release()


def _shrunk_bytes(size: tuple[int, int], side: int) -> int:
    """Bytes of one uint8 RGB frame of `size` once `_shrink` has brought its short side to `side`."""
    h, w = size
    scale = min(1.0, side / max(1, min(h, w)))
    return round(h * scale) * round(w * scale) * 3


def _shrink(frame: np.ndarray, side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    scale = side / min(h, w)
    if scale >= 1:
        return frame
    return cv2.resize(frame, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
