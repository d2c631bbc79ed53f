"""Frame masks for training, drawn per clip from the stage's mask-ratio schedule and layouts.

The masked fraction r is uniform in a range that moves linearly over the stage; a clip of K frames
keeps n = K - clamp(round(r K), 1, K - 1) reference frames, placed by a layout drawn by weight:
`random` (anywhere: stage 1), `interpolation` (first and last kept, extra references inside; one
reference alone sits first, middle or last: image-to-video), `prefix` (the first n: expansion).
Lowering the kept count over a stage moves the task from interpolation to image-to-video (stage 3).
"""
from __future__ import annotations

import torch

from .config import MaskSection


def ratio_range(cfg: MaskSection, progress: float) -> tuple[float, float]:
    """The masked-fraction range at `progress` in [0, 1] of the stage."""
    (a0, b0), (a1, b1) = cfg.ratio_start, cfg.ratio_end
    return a0 + (a1 - a0) * progress, b0 + (b1 - b0) * progress


def _kept_frames(layout: str, keep: int, frames: int, gen: torch.Generator) -> list[int]:
    if layout == "prefix":
        return list(range(keep))
    if layout == "random":
        return torch.randperm(frames, generator=gen)[:keep].tolist()
    if keep == 1:  # interpolation with one reference left: image-to-video from first, middle or last
        return [(0, frames // 2, frames - 1)[int(torch.randint(3, (1,), generator=gen))]]
    inner = (torch.randperm(frames - 2, generator=gen)[: keep - 2] + 1).tolist()
    return [0, frames - 1, *inner]


def sample_masks(cfg: MaskSection, batch: int, frames: int, progress: float, gen: torch.Generator) -> torch.Tensor:
    """(batch, frames) bool, True = masked (to generate); at least one kept and one masked frame per clip."""
    lo, hi = ratio_range(cfg, progress)
    names = list(cfg.layouts)
    weights = torch.tensor([float(cfg.layouts[n]) for n in names])
    masked = torch.ones(batch, frames, dtype=torch.bool)
    for b in range(batch):
        ratio = lo + (hi - lo) * float(torch.rand((), generator=gen))
        keep = frames - min(frames - 1, max(1, round(ratio * frames)))
        layout = names[int(torch.multinomial(weights, 1, generator=gen))]
        masked[b, _kept_frames(layout, keep, frames, gen)] = False
    return masked
