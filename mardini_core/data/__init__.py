"""Training data: clips of K frames from video files, their low-resolution views, cached latents."""
from .clips import ClipConfig, VideoClips, low_view, resize_crop
from .latents import LatentClips
from .sources import Segment, find_segments, shared_dir
from .video import VideoInfo, VideoReadError, probe, read_frames

__all__ = [
    "ClipConfig",
    "VideoClips",
    "LatentClips",
    "Segment",
    "find_segments",
    "shared_dir",
    "low_view",
    "resize_crop",
    "VideoInfo",
    "VideoReadError",
    "probe",
    "read_frames",
]
