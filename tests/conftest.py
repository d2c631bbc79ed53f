"""Shared test fixtures: tiny models and the location of ../shared (real clips, TAEF2 weights)."""
import os
from pathlib import Path

import pytest
import torch
from comfy_fakes import install as install_comfy_fakes

# pytest imports the repository root's __init__.py (the ComfyUI entry point) as a package: give it
# the small ComfyUI fakes first, so any single test file runs on its own, as in the full suite.
install_comfy_fakes()

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MARDINI_SHARED", REPO.parent / "shared"))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def shared_dir() -> Path:
    return SHARED
