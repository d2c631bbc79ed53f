"""nodes/model_window.py: the window the Frame Mask checks its frame count against, read from the header."""
from pathlib import Path

import dataclasses

import pytest
import torch
from hypothesis import given, settings, strategies as st

from comfy_fakes import load_pack

PACK = load_pack()

import folder_paths  # noqa: E402  (the fakes, installed by load_pack)
from mardini_core.checkpoint import save_checkpoint  # noqa: E402
from mardini_core.config import preset  # noqa: E402
from mardini_core.default_model import load_default  # noqa: E402
from mardini_core.errors import CheckpointError  # noqa: E402
from mardini_core.model import MarDini  # noqa: E402

model_window = PACK.nodes.model_window.model_window


def test_embedded_default_reports_the_window_it_runs():
    assert model_window("(embedded default)") == load_default().config.max_frames


@settings(max_examples=4, deadline=None)
@given(frames=st.integers(2, 33))
def test_a_listed_checkpoint_reports_its_own_window(frames):
    config = dataclasses.replace(preset("tiny/T"), max_frames=frames)
    path = Path(folder_paths.models_dir) / "mardini" / f"window-{frames}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(path, MarDini(config))
    try:
        assert model_window(path.name) == frames
    finally:
        path.unlink()


@pytest.mark.parametrize("name", ["missing.safetensors", "../escape.safetensors", "/etc/passwd", ""])
def test_names_the_loader_would_refuse_are_refused(name):
    with pytest.raises(CheckpointError):
        model_window(name)
