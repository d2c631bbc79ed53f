"""Interpolators: the frame at any time between two given frames, behind one interface (anchors.py).

- `rife` (the default): RIFE 4.x (ifnet.py, rife.py) with the embedded Practical-RIFE weights, or any
  RIFE 4.x checkpoint given by path;
- `dis`: OpenCV DIS optical flow (dis.py): no weights, milliseconds a frame, what training uses.
Quality `best` asks any of them four ways and averages (ensemble.py); `fast` asks once.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from ..errors import InputError
from .anchors import Interpolator, Pair, anchor_frames
from .dis import Dis
from .ensemble import Ensemble
from .rife import Rife, embedded_ifnet, load_ifnet

INTERPOLATORS = ("rife", "dis")  # or the path of a RIFE 4.x checkpoint
QUALITIES = ("best", "fast")
DEFAULT_INTERPOLATOR = "rife"
DEFAULT_QUALITY = "fast"  # sharper (FID 35.6 vs 39.7) and 4x faster than "best", which wins on PSNR (README: Quality)

__all__ = ["Interpolator", "Pair", "anchor_frames", "load_interpolator", "at_quality", "Dis", "Ensemble", "Rife",
           "INTERPOLATORS", "QUALITIES", "DEFAULT_INTERPOLATOR", "DEFAULT_QUALITY"]


@lru_cache(maxsize=8)
def load_interpolator(name: str = DEFAULT_INTERPOLATOR, quality: str = DEFAULT_QUALITY,
                      device: str | torch.device = "cpu") -> Interpolator:
    """`rife`, `dis`, or a RIFE 4.x checkpoint's path, at `quality` best or fast, run on `device`
    (loaded once per process for each choice: interpolators hold no state between pairs)."""
    if quality not in QUALITIES:
        raise InputError(f"anchor quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
    if name == "dis":
        return at_quality(Dis(), quality)
    if name == "rife":
        return at_quality(Rife(embedded_ifnet(device)), quality)
    if not Path(name).suffix:
        raise InputError(f"interpolator must be one of {', '.join(INTERPOLATORS)} or a RIFE 4.x checkpoint file, got {name!r}")
    return at_quality(Rife(load_ifnet(name, device), name=Path(name).stem), quality)


def at_quality(interpolator: Interpolator, quality: str) -> Interpolator:
    """best: the 4-view ensemble of the interpolator; fast: the interpolator itself."""
    return Ensemble(interpolator) if quality == "best" else interpolator
