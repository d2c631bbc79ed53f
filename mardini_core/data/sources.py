"""Which stretches of which video files a dataset draws clips from.

A folder is scanned for video files; when it holds a `manifest.json` (a list of objects with `file`,
`start_frame`, `num_frames`), its segments are used instead, so clips never cross the hard cuts a
curator marked. Unreadable files are reported with a warning naming the file and skipped.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import InputError
from ..outputs import safe_name
from .video import VIDEO_SUFFIXES, VideoReadError, probe

MANIFEST = "manifest.json"
SHARED_ENV = "MARDINI_SHARED"


def shared_dir() -> Path:
    """This project's shared folder (data, weights): $MARDINI_SHARED, else `<repo>/../shared`."""
    env = os.environ.get(SHARED_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared"


@dataclass(frozen=True)
class Segment:
    """Frames [start, start + frames) of one file: one continuous shot."""

    path: Path
    start: int
    frames: int
    name: str = ""  # the manifest's name for the segment ("" for a whole file)


Wanted = tuple[Path, int, "int | None", str]  # file, first frame, frames (None = to the end), name


def _manifest_segments(folder: Path) -> list[Wanted]:
    try:
        entries = json.loads((folder / MANIFEST).read_text())
        wanted = [
            (folder / e["file"], int(e.get("start_frame", 0)), int(e["num_frames"]) if "num_frames" in e else None,
             safe_name(e["name"]) if e.get("name") not in (None, "") else "")  # names become file names (eval's sheets)
            for e in entries
        ]
        if bad := [w for w in wanted if w[1] < 0 or (w[2] is not None and w[2] < 1)]:
            raise ValueError(f"{bad[0][0].name}: start_frame must be >= 0 and num_frames >= 1")
        return wanted
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError, UnicodeDecodeError) as exc:
        raise InputError(f"{folder / MANIFEST} is malformed ({exc}); fix it or delete it to use whole files") from exc


def _wanted(paths: Iterable[str | os.PathLike]) -> list[Wanted]:
    wanted: list[Wanted] = []
    for p in map(Path, paths):
        if not p.exists():
            raise InputError(f"{p} does not exist; give a video file or a folder of videos")
        if p.is_dir():
            if (p / MANIFEST).is_file():
                wanted += _manifest_segments(p)
            else:
                wanted += [(f, 0, None, "") for f in sorted(p.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
        else:
            wanted.append((p, 0, None, ""))
    return wanted


def find_segments(paths: Iterable[str | os.PathLike], exact: bool = True) -> tuple[list[Segment], list[str]]:
    """(readable segments, one message per skipped file). Every skipped file also raises a warning.
    `exact=False` takes frame counts from the containers' headers (see `probe`) instead of decoding."""
    lengths: dict[Path, int | str] = {}
    segments, skipped = [], []
    for path, start, frames, name in _wanted(paths):
        if path not in lengths:
            try:
                lengths[path] = probe(path, exact).frames
            except VideoReadError as exc:
                lengths[path] = str(exc)
                skipped.append(f"skipping unreadable video {path}: {exc}")
                warnings.warn(skipped[-1], stacklevel=2)
        total = lengths[path]
        if isinstance(total, int) and start < total:
            segments.append(Segment(path, start, min(total - start, frames if frames is not None else total), name))
    return segments, skipped
