"""Generation: a window in four stages (encode -> plan -> sample -> decode, window.py), long videos as
schedules of windows (long_video.py), sampling settings as one value (settings.py).

The public surface; the modules behind it are the package's own.
"""
from .latents import check_images, decode_frames, encode_frames, from_model_space, images_from_hwc, size_multiple, to_model_space
from .long_video import Window, WindowSchedule, run_schedule, schedule_windows
from .settings import Hooks, Resolved, Sampling, resolve
from .window import Anchor, Encoded, Generation, decode, encode, generate, plan, sample, window_anchor

__all__ = [
    "Sampling", "Hooks", "Resolved", "resolve",
    "Anchor", "Encoded", "Generation", "encode", "plan", "sample", "decode", "generate", "window_anchor",
    "Window", "WindowSchedule", "schedule_windows", "run_schedule",
    "check_images", "decode_frames", "encode_frames", "from_model_space", "to_model_space", "images_from_hwc", "size_multiple",
]
