"""The ComfyUI nodes under bad input (ComfyUI fakes, tiny model, fake VAE): the Frame Mask node, VAE Encode
and Long Video raise only MarDiniError subclasses that name the problem, and never run the model on it."""
from __future__ import annotations


import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from comfy_fakes import load_pack
from comfy_fakes.fake_vae import FakeVAE
from mardini_core.errors import MarDiniError, MaskError
from support import count_block_calls, tiny_through_loader_node

PACK = load_pack()
N = PACK.NODE_CLASS_MAPPINGS
import folder_paths  # noqa: E402  (the fake, installed by load_pack)

PRESET_NAMES = N["MarDiniFrameMask"].INPUT_TYPES()["required"]["preset"][0]
MANY = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SOME = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def loaded():
    with tiny_through_loader_node(N["MarDiniModelLoader"], folder_paths.models_dir, "reliability-nodes.safetensors", 6) as model:
        yield model, count_block_calls(model.model)


@MANY
@given(frames=st.integers(-3, 2000) | st.integers(), preset=st.sampled_from(PRESET_NAMES) | st.text(max_size=6),
       given_frames=st.integers(-3, 2000) | st.integers(), pattern=st.text(alphabet="xX.? ", max_size=30) | st.text(max_size=10))
def test_frame_mask_node_raises_only_mask_errors(frames, preset, given_frames, pattern):
    try:
        mask, text = N["MarDiniFrameMask"]().build(frames, preset, given_frames, pattern)
    except MaskError as exc:
        assert str(exc)
        return
    assert text == mask.pattern and mask.frames == frames and any(mask.given) and not all(mask.given)


@SOME
@given(data=st.data(), defect=st.sampled_from(["nan", "odd", "empty", "count", "channels", "ndim", "vae"]))
def test_vae_encode_node_refuses_bad_images(loaded, data, defect):
    model, blocks = loaded
    mask = N["MarDiniFrameMask"]().build(5, data.draw(st.sampled_from(["interpolation", "loop", "image-to-video (first)"])), 2, "")[0]
    n, h, w, c = mask.images_needed, 32, 32 * data.draw(st.integers(1, 2)), 3
    vae = FakeVAE(32)
    if defect == "odd":
        h = data.draw(st.sampled_from([8, 24, 40, 48]))
    if defect == "empty":
        n = 0
    if defect == "count":
        n += data.draw(st.sampled_from([1, 2]))
    if defect == "channels":
        c = data.draw(st.sampled_from([1, 2]))
    if defect == "vae":
        vae = FakeVAE(data.draw(st.sampled_from([4, 16])))
    images = torch.rand(n, h, w, c)
    if defect == "ndim":
        images = images[0]
    if defect == "nan":
        images.view(-1)[data.draw(st.integers(0, images.numel() - 1))] = float("nan")
    with pytest.raises(MarDiniError):  # fit="off": by default (crop) an odd size is fitted instead (test_nodes_comfy_native)
        N["MarDiniVAEEncode"]().encode(model, vae, images, mask, fit="off")
    assert not blocks


@SOME
@given(data=st.data(), defect=st.sampled_from(["nan", "odd", "empty", "one_image_slow_motion", "ndim", "steps", "guidance"]))
def test_long_video_node_refuses_bad_requests(loaded, data, defect):
    model, blocks = loaded
    mode = data.draw(st.sampled_from(["slow motion", "expansion", "loop"]))
    n, h, w = 2, 32, 32
    steps, guidance = 1, 1.0
    if defect == "odd":
        h = data.draw(st.sampled_from([8, 24, 40]))
    if defect == "empty":
        n = 0
    if defect == "one_image_slow_motion":
        n, mode = 1, "slow motion"
    if defect == "steps":
        steps = data.draw(st.sampled_from([0, -1, 10**9]))
    if defect == "guidance":
        guidance = data.draw(st.sampled_from([float("nan"), float("inf"), -1.0]))
    images = torch.rand(n, h, w, 3)
    if defect == "ndim":
        images = images[0]
    if defect == "nan":
        images[0, 1, 2, 0] = float("nan")
    with pytest.raises(MarDiniError):
        N["MarDiniLongVideo"]().generate(model, FakeVAE(32), images, mode, 20, 0, steps, guidance, 0, 0.0, fit="off")
    assert not blocks
