"""Paths OpenCV can take, for any file name the system allows.

OpenCV's file functions convert a path string to UTF-8 and crash the process (SIGSEGV, no message) on
a name that is not valid UTF-8: on Linux a Latin-1 `café.png` arrives in Python as `caf\\udce9.png`, a
lone surrogate. So images are read and written through bytes (`imdecode` / `imencode`, the file opened
by Python), and a video OpenCV must open by name is given one it can take: the path itself when it is
valid UTF-8, else a link with a plain name in a fresh temporary folder (reading), or a plain temporary
name that is moved to the path once written (writing).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np


def opencv_can_take(path: str | os.PathLike) -> bool:
    """True when OpenCV can be handed the path as it is (valid UTF-8)."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def plain_suffix(path: Path) -> str:
    """The file's suffix if it is plain ASCII (OpenCV picks formats by it), else none."""
    return path.suffix if path.suffix.isascii() else ""


def imread(path: str | os.PathLike, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray | None:
    """cv2.imread for any name: None where OpenCV cannot decode the file."""
    data = np.fromfile(os.fspath(path), dtype=np.uint8)
    return cv2.imdecode(data, flags) if data.size else None


def imwrite(path: str | os.PathLike, image: np.ndarray) -> bool:
    """cv2.imwrite for any name (the format from the suffix); False where encoding or writing fails."""
    ok, data = cv2.imencode(plain_suffix(Path(path)) or ".png", image)
    if not ok:
        return False
    try:
        with open(path, "wb") as f:
            f.write(data.tobytes())
    except OSError:
        return False
    return True


@contextlib.contextmanager
def for_reading(path: str | os.PathLike) -> Iterator[str]:
    """A name OpenCV can open `path` by (VideoCapture): the path, or a plainly named link to it."""
    if opencv_can_take(path):
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="mardini-read-") as folder:
        link = Path(folder) / ("input" + plain_suffix(Path(path)))
        os.symlink(os.path.abspath(path), link)
        yield str(link)


@contextlib.contextmanager
def for_writing(path: str | os.PathLike) -> Iterator[str]:
    """A name OpenCV can write `path` under (VideoWriter): the path, or a plain temporary name whose file is
    moved to `path` when the block ends without an error."""
    if opencv_can_take(path):
        yield os.fspath(path)
        return
    with tempfile.TemporaryDirectory(prefix="mardini-write-") as folder:
        staged = Path(folder) / ("output" + plain_suffix(Path(path)))
        yield str(staged)
        if staged.exists():
            shutil.move(staged, path)
