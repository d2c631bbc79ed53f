"""Memory estimates checked before any allocation that a user's size or frame count drives.

An image header claiming 100000x100000 pixels, `--size 8192x8192`, automatic sizing of a 9000x9000
photo or a long 720p video would otherwise fail deep inside NumPy, OpenCV or PyTorch (or take the
machine down) after minutes of work. Each such place estimates its bytes first and calls
`check_fits`, which refuses with one line naming the size, the estimate and the fix.

The budget is the memory available now (`MemAvailable` on Linux, free GPU memory on CUDA), or
`$MARDINI_MEMORY_LIMIT` (bytes, or with a K/M/G/T suffix) where that is set, e.g. to keep a shared
machine usable.
"""
from __future__ import annotations

import os
import re

import torch

from .errors import MemoryBudgetError

LIMIT_ENV = "MARDINI_MEMORY_LIMIT"
USABLE = 0.8  # of what is available: the rest stays for the interpreter, libraries and other work
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _limit_from_env() -> int | None:
    text = os.environ.get(LIMIT_ENV, "").strip().lower()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", text)
    return int(float(match.group(1)) * _UNITS[match.group(2)]) if match else None


def _host_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 40  # unknown (not Linux or macOS): do not refuse on a guess


def available_bytes(device: str | torch.device | None = None) -> int:
    """Bytes this process may still allocate on `device` (the host when None or CPU)."""
    limit = _limit_from_env()
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda" and torch.cuda.is_available():
        free, _total = torch.cuda.mem_get_info(device)
        available = free
    else:
        available = _host_available()
    return min(available, limit) if limit is not None else available


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_fits(nbytes: float, what: str, fix: str, device: str | torch.device | None = None, whole: bool = False) -> None:
    """Raise MemoryBudgetError when `what` (about `nbytes`) would not fit in the usable memory: what is free
    now, or with `whole` a GPU's whole memory (where a host such as ComfyUI moves other models out to make room)."""
    cuda = device is not None and torch.device(device).type == "cuda" and torch.cuda.is_available()
    available = torch.cuda.get_device_properties(torch.device(device)).total_memory if cuda and whole else available_bytes(device)
    if nbytes > USABLE * available:
        where = "GPU memory" if cuda else "memory"
        raise MemoryBudgetError(f"{what} needs about {human(nbytes)} but {human(available)} of {where} is available; {fix}")


def clip_bytes(frames: int, height: int, width: int) -> int:
    """The host's share of a generation: every frame kept as float pixels a few times over (the clip, its
    windows, the written copy)."""
    return frames * height * width * 3 * 4 * 5


def vae_bytes(frames: int, height: int, width: int, vae_width: int = 64) -> int:
    """`frames` images through a VAE whose widest layer has `vae_width` channels at full resolution (three
    such activations alive)."""
    return frames * height * width * vae_width * 4 * 3


def window_bytes(window: int, height: int, width: int, vae_width: int = 64, hidden: int = 512) -> int:
    """The model device's share: one window decoded at once through a VAE whose widest layer has `vae_width`
    channels at full resolution (three such activations alive), and the generator's activations for a
    window with guidance (2 clips of one token per 16 x 16 pixels, `hidden` channels, about a dozen such
    tensors alive in a block: q, k, v, the MLP's 4x, norms and residuals)."""
    return vae_bytes(window, height, width, vae_width) + 2 * window * (height * width // 256) * hidden * 4 * 12


def generation_bytes(frames: int, window: int, height: int, width: int, vae_width: int = 64, hidden: int = 512) -> int:
    """A rough upper estimate of a generation's peak where everything runs in one memory (a CPU)."""
    return clip_bytes(frames, height, width) + window_bytes(window, height, width, vae_width, hidden)
