"""The templates' example images and video, put in ComfyUI's input folder so the templates run as opened.

ComfyUI's LoadImage and LoadVideo only list files of the input folder. When ComfyUI loads the pack,
each example that is not there yet is copied in under the name the templates use; a file of that name
that is already there (the user's own, or an earlier copy) is never touched.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# name in ComfyUI's input folder -> file in assets/ (credits in assets/README.md)
EXAMPLES = {
    "mardini_first_frame.png": "first.png",
    "mardini_last_frame.png": "last.png",
    "mardini_keyframe_1.jpg": "keyframe_1.jpg",
    "mardini_keyframe_2.jpg": "keyframe_2.jpg",
    "mardini_keyframe_3.jpg": "keyframe_3.jpg",
    "mardini_keyframe_4.jpg": "keyframe_4.jpg",
    "mardini_view_a.jpg": "view_a.jpg",
    "mardini_view_b.jpg": "view_b.jpg",
    "mardini_video.mp4": "clip.mp4",
}


def install_examples(input_dir: str | os.PathLike) -> list[str]:
    """Copy the examples missing from `input_dir`; returns the names copied. Never overwrites a file."""
    target = Path(input_dir)
    copied = []
    for name, source in EXAMPLES.items():
        dest, src = target / name, ASSETS / source
        if dest.exists() or not src.is_file():
            continue
        target.mkdir(parents=True, exist_ok=True)
        data = src.read_bytes()
        try:
            with open(dest, "xb") as f:  # exclusive create: a file that appeared meanwhile is left alone
                f.write(data)
        except FileExistsError:
            continue
        copied.append(name)
    return copied


def install_examples_into_comfy() -> None:
    """At pack load: a failure here (read-only input folder...) is logged, never stops the pack from loading."""
    from . import comfy_bridge

    try:
        copied = install_examples(comfy_bridge.input_directory())
    except Exception as exc:  # noqa: BLE001 - the nodes must load even if the examples cannot be copied
        logging.warning("[MarDini] could not copy the template examples into ComfyUI's input folder: %s", exc)
        return
    if copied:
        logging.info("[MarDini] copied template examples into ComfyUI's input folder: %s", ", ".join(copied))
