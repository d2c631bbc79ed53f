"""docs/CONTRACTS.md runs: every python block in it executes, in order, against a tiny model and a
stand-in VAE, so the contracts cannot go stale without this test failing."""
from __future__ import annotations

import re
from pathlib import Path

import torch

from support import StandInVAE, one_thread

CONTRACTS = Path(__file__).resolve().parents[1] / "docs" / "CONTRACTS.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", CONTRACTS.read_text(encoding="utf-8"), flags=re.S)


def test_every_python_block_of_the_contracts_runs(tmp_path):
    blocks = python_blocks()
    assert len(blocks) >= 3
    vae = StandInVAE(channels=32)
    g = torch.Generator().manual_seed(0)
    namespace = {  # the names the blocks take as given, in the shapes the text states
        "z_low": torch.randn(1, 5, 32, 4, 4, generator=g),
        "masked": torch.tensor([[False, True, True, True, False]]),
        "z_t": torch.randn(1, 5, 32, 8, 8, generator=g),
        "t": torch.tensor([0.5]),
        "path": tmp_path / "model.safetensors",
        "vae": vae,
        "encode": vae.encode,
        "images": torch.rand(2, 3, 64, 64, generator=g),  # the interpolation mask's two given frames
        "decoded": torch.rand(9, 3, 64, 64, generator=g),  # the 9-frame window's pixels, its anchor, and the
        "pixels": torch.rand(9, 3, 64, 64, generator=g),  # anchor's decoded latents
        "reconstruction": torch.rand(9, 3, 64, 64, generator=g),
    }
    with one_thread(), torch.no_grad():
        for n, block in enumerate(blocks):
            exec(compile(block, f"{CONTRACTS.name} python block {n + 1}", "exec"), namespace)  # noqa: S102
    assert namespace["schedule"].total == 17 and namespace["frames"].shape[0] == 9  # assemble_frames: one window
