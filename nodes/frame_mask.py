"""MarDini Frame Mask: which frames of the clip are given (x) and which are generated (.).

The preset list and its patterns must agree with js/mardini_timeline_logic.js, which draws the
clickable timeline in this node and rewrites `pattern` as the user clicks (tests/test_nodes_js.py,
test_js_presets_build_the_same_patterns_as_the_node, checks that both sides build the same patterns).
"""
from __future__ import annotations

from mardini_core import masks
from mardini_core.errors import MaskError

from .types import MARDINI_MASK, MarDiniNode

CUSTOM = "custom"
# preset -> (mardini_core.masks task, image position for image-to-video)
PRESETS = {
    "image-to-video (first)": ("i2v", "first"),
    "image-to-video (middle)": ("i2v", "middle"),
    "image-to-video (last)": ("i2v", "last"),
    "interpolation": ("interpolate", None),
    "loop": ("loop", None),
    "expansion": ("expand", None),
    CUSTOM: (CUSTOM, None),
}
MAX_FRAMES = 1024  # the config validator's ceiling; the model's own window is checked downstream


def build_mask(frames: int, preset: str, given_frames: int, pattern: str) -> masks.FrameMask:
    """The FrameMask the widgets describe (the custom pattern must have `frames` characters)."""
    if preset not in PRESETS:
        raise MaskError(f"unknown mask preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    task, position = PRESETS[preset]
    if task == CUSTOM:
        mask = masks.from_pattern(pattern)
        if mask.frames != frames:
            raise MaskError(
                f"the custom pattern {mask.pattern!r} has {mask.frames} frames but 'frames' is {frames}; "
                "make them agree (the timeline does this when you click it)"
            )
    else:
        mask = masks.for_task(task, frames, images=given_frames, position=position or "first")
        typed = "".join(str(pattern).split())
        if typed and typed.lower() != mask.pattern:  # never silently replace what the user typed
            raise MaskError(
                f"the pattern {typed!r} is not the {preset!r} preset's ({mask.pattern}); set preset to 'custom' to use "
                "your pattern (x = your picture, . = a new frame), or clear the pattern to use the preset's"
            )
    return mask.validate()


class MarDiniFrameMask(MarDiniNode):
    SEARCH_ALIASES = ["image to video", "i2v", "interpolation", "loop", "extend", "keyframes", "timeline"]  # what artists type in node search (ComfyUI core's convention)
    DESCRIPTION = (
        "Frame mask of the clip: x = given frame (from your images), . = generated. Click the timeline to "
        "toggle a frame. Given frames take the input images in order; a loop uses one image at both ends."
    )
    RETURN_TYPES = (MARDINI_MASK, "STRING")
    RETURN_NAMES = ("mask", "pattern")
    FUNCTION = "build"

    REQUIRED = {
        "frames": ("INT", {"default": 9, "min": 2, "max": MAX_FRAMES, "step": 1, "tooltip":
            "Frames in the clip, your pictures included. One clip holds at most the model's window: 9 frames "
            "for the embedded default. For longer videos use MarDini Long Video."}),
        "preset": (list(PRESETS), {"default": "image-to-video (first)", "tooltip":
            "What to make. image-to-video: one picture starts (or sits in, or ends) the clip. interpolation: "
            "frames between your pictures. loop: one picture at both ends. expansion: your frames continue. "
            "custom: the pattern as typed or clicked on the timeline."}),
        "given_frames": ("INT", {"default": 2, "min": 1, "max": MAX_FRAMES, "step": 1, "tooltip":
            "How many pictures you give, for 'interpolation' (spread evenly, at least 2) and 'expansion' "
            "(the first frames)."}),
        "pattern": ("STRING", {"default": "x........", "multiline": False, "tooltip":
            "One character per frame: x = your picture, . = a new frame. Click the timeline to change it "
            "(the preset becomes 'custom')."}),
    }

    def build(self, frames, preset, given_frames, pattern):
        mask = build_mask(frames, preset, given_frames, pattern)
        return (mask, mask.pattern)
