"""Contact sheets: one labelled row of frames per method, to see at a glance what the numbers mean."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .. import opencv_paths
from ..atomic import atomic_path
from ..errors import InputError

ROW_HEIGHT = 128  # pixels per row: enough to judge motion and blur, small enough for a 9-column PNG
LABEL_WIDTH = 150
GAP = 2


def contact_sheet(rows: list[tuple[str, np.ndarray]], row_height: int = ROW_HEIGHT) -> np.ndarray:
    """[(label, clip (K, H, W, 3) in [0, 1])] -> (rows * row_height, width, 3) uint8 RGB image."""
    strips = []
    for label, clip in rows:
        k, h, w, _ = clip.shape
        tw = max(1, round(w * row_height / h))
        thumbs = [cv2.resize(np.asarray(f, np.float32), (tw, row_height), interpolation=cv2.INTER_AREA) for f in clip]
        strip = np.full((row_height, LABEL_WIDTH + k * (tw + GAP), 3), 255, np.uint8)
        for i, thumb in enumerate(thumbs):
            left = LABEL_WIDTH + i * (tw + GAP)
            strip[:, left : left + tw] = (thumb.clip(0, 1) * 255 + 0.5).astype(np.uint8)
        cv2.putText(strip, label, (6, row_height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        strips.append(strip)
    width = max(s.shape[1] for s in strips)
    return np.concatenate([np.pad(s, ((0, GAP), (0, width - s.shape[1]), (0, 0)), constant_values=255) for s in strips])


def save_sheet(path: str | os.PathLike, rows: list[tuple[str, np.ndarray]]) -> Path:
    """Write the contact sheet as a PNG (the caller has checked the name with outputs.check_new_file)."""
    path = Path(path)
    with atomic_path(path, ".png") as tmp:  # written beside and renamed over: never through a link at the name
        if not opencv_paths.imwrite(tmp, contact_sheet(rows)[:, :, ::-1]):
            raise InputError(f"could not write {path}; check that --out is a writable folder")
    return path
