"""Training step time with Identity Attention split by distinct masks (host sync, one call per mask group)
against one masked call per layer (no sync), as a ratio in one process; random latents, one mask per clip.

  PYTHONPATH=. python benchmarks/identity_training_step.py small/T 256 9 4   # preset, pixels, frames, clips
"""
from __future__ import annotations

import sys
import time

import torch

from mardini_core.config import preset
from mardini_core.model import MarDini
from mardini_core.model import attention
from mardini_core.training.config import MaskSection
from mardini_core.training.losses import PlannerHead, TrainModules
from mardini_core.training.masking import sample_masks


def main(name: str, side: int, frames: int, batch: int, repeats: int = 3) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = preset(name, max_frames=frames)
    losses = ("reconstruction", "diffusion_uncond") if name.endswith("/ST") else ("diffusion",)
    modules = TrainModules(MarDini(config), PlannerHead(config), losses)
    optimizer = torch.optim.AdamW(modules.parameters(), lr=1e-4)
    h, c = side // 8, config.latent_channels  # TAEF2: 8 pixels per latent
    high = torch.randn(batch, frames, c, h, h)
    low = torch.randn(batch, frames, c, h // config.planner_downscale, h // config.planner_downscale)
    masked = sample_masks(MaskSection(), batch, frames, 0.0, torch.Generator().manual_seed(0))
    inputs = (high, low, masked, torch.rand(batch), torch.randn_like(high), torch.zeros(batch, dtype=torch.bool))
    built = attention.FrameGroups.__init__

    def step_seconds(split: bool) -> float:
        attention.FrameGroups.__init__ = lambda self, m, **_: built(self, m, split=split)
        try:
            times = []
            for _ in range(repeats + 1):  # the first is a warm-up
                tic = time.perf_counter()
                optimizer.zero_grad()
                sum(modules(*inputs).values()).backward()
                optimizer.step()
                times.append(time.perf_counter() - tic)
            return min(times[1:])
        finally:
            attention.FrameGroups.__init__ = built

    before, after = min(step_seconds(True) for _ in range(2)), min(step_seconds(False) for _ in range(2))
    print(f"{name} {side}px {frames} frames {batch} clips ({len(torch.unique(masked, dim=0))} distinct masks): "
          f"split {before * 1e3:.0f} ms, one masked call {after * 1e3:.0f} ms per step, ratio {after / before:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:5]))
