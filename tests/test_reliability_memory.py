"""Long runs: many generations in one process do not leak host memory, and on a GPU every activation is
freed between runs (only the weights stay)."""
from __future__ import annotations

import gc
import re
from pathlib import Path

import pytest
import torch

from mardini_core import masks
from mardini_core.generation import generate
from mardini_core.generation import Sampling
from support import StandInVAE, live_tiny, one_thread

RUNS, WARM_UP, MAX_GROWTH = 50, 5, 0.05


def rss_bytes() -> int:
    """Resident set size from /proc/self/status (VmRSS, in kB)."""
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) * 1024


def runs(model, device, count: int):
    vae = StandInVAE()
    vae.proj = vae.proj.to(device)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    for i in range(count):
        mask = masks.interpolation(9) if i % 2 else masks.image_to_video(9)  # two masks: one and two references
        given = images[: mask.images_needed]
        out = generate(model, vae, given, mask, Sampling(steps=2, guidance=2.5, seed=i))
        assert torch.isfinite(out.frames).all()
        del out


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux) to read the resident set size")
def test_fifty_generations_grow_resident_memory_by_less_than_5_percent(record_property):
    with one_thread():
        model = live_tiny()
        runs(model, "cpu", WARM_UP)
        gc.collect()
        before = rss_bytes()
        runs(model, "cpu", RUNS)
        gc.collect()
        after = rss_bytes()
    growth = (after - before) / before
    record_property("rss_growth_percent", round(100 * growth, 2))
    print(f"\nRSS over {RUNS} generations: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB ({100 * growth:+.2f} %)")
    assert growth < MAX_GROWTH


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_activations_are_freed_between_runs():
    model = live_tiny().cuda()
    torch.cuda.synchronize()
    weights = torch.cuda.memory_allocated()
    runs(model, "cuda", 2)  # warm-up: kernels, workspaces
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    for _ in range(3):
        runs(model, "cuda", 1)
        torch.cuda.synchronize()
        gc.collect()
        assert torch.cuda.memory_allocated() == baseline, "memory held after a generation finished"
    assert baseline - weights < 1 << 20, f"{baseline - weights} bytes still allocated beyond the weights after a run"
