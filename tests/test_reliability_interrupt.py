"""Stopping a generation between steps (the sampler's `should_stop`, a callback that raises, ComfyUI's
Cancel in the nodes) leaves the model as it was: the next run with the same seed equals a fresh one."""
from __future__ import annotations

import copy

import pytest
import torch

from comfy_fakes import load_pack
from comfy_fakes.fake_vae import FakeVAE
from mardini_core import masks
from mardini_core.errors import GenerationInterrupted
from mardini_core.generation import generate
from mardini_core.generation import Hooks, Sampling
from support import StandInVAE, live_tiny, one_thread, tiny_through_loader_node

PACK = load_pack()
N = PACK.NODE_CLASS_MAPPINGS
import comfy.model_management  # noqa: E402  (the fakes, installed by load_pack)
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402

STEPS = 4


@pytest.fixture(scope="module")
def setup():
    with one_thread():
        model = live_tiny(seed=3)
        pristine = copy.deepcopy(model)
        images = torch.rand(2, 3, 32, 64, generator=torch.Generator().manual_seed(0))
        mask = masks.interpolation(7)
        fresh = generate(pristine, StandInVAE(), images, mask, Sampling(steps=STEPS, guidance=2.5, eta=0.5, seed=11)).frames
        yield model, pristine, images, mask, fresh


def state_equal(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("stop_at", range(STEPS))
def test_should_stop_then_same_seed_equals_fresh(setup, stop_at):
    model, pristine, images, mask, fresh = setup
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > stop_at

    with pytest.raises(GenerationInterrupted, match=f"step {stop_at} of {STEPS}"):
        generate(model, StandInVAE(), images, mask, Sampling(steps=STEPS, guidance=2.5, eta=0.5, seed=11), hooks=Hooks(should_stop=should_stop))
    assert torch.is_grad_enabled() and not model.training and state_equal(model, pristine)
    again = generate(model, StandInVAE(), images, mask, Sampling(steps=STEPS, guidance=2.5, eta=0.5, seed=11)).frames
    assert torch.equal(again, fresh)


class Cancel(BaseException):
    """Like ComfyUI's InterruptProcessingException: a BaseException thrown from the step callback."""


@pytest.mark.parametrize("cancel_at", [1, STEPS - 1])
def test_exception_from_the_step_callback_leaves_the_model_usable(setup, cancel_at):
    model, pristine, images, mask, fresh = setup

    def callback(step, total, preview):
        if step == cancel_at:
            raise Cancel

    with pytest.raises(Cancel):
        generate(model, StandInVAE(), images, mask, Sampling(steps=STEPS, guidance=2.5, eta=0.5, seed=11), hooks=Hooks(step=callback))
    assert torch.is_grad_enabled() and state_equal(model, pristine)
    assert torch.equal(generate(model, StandInVAE(), images, mask, Sampling(steps=STEPS, guidance=2.5, eta=0.5, seed=11)).frames, fresh)


@pytest.fixture(scope="module")
def node_model():
    with tiny_through_loader_node(N["MarDiniModelLoader"], folder_paths.models_dir, "reliability-interrupt.safetensors", 4) as model:
        yield model


def node_clip(model, cancel_at=None):
    """VAE Encode -> Planner -> Sampler; ComfyUI's Cancel pressed while step `cancel_at` runs."""
    vae, mask = FakeVAE(32), N["MarDiniFrameMask"]().build(5, "image-to-video (first)", 1, "")[0]
    images = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(5))
    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    original = comfy.utils.ProgressBar.update_absolute

    def update(bar, value, total=None, preview=None):
        original(bar, value, total, preview)
        if value == cancel_at:
            comfy.model_management.interrupt_current_processing(True)

    comfy.utils.ProgressBar.update_absolute = update
    try:
        return N["MarDiniSampler"]().sample(model, plan, latents, mask, STEPS, 2.5, 123, 0.3)[0]["samples"]
    finally:
        comfy.utils.ProgressBar.update_absolute = original


@pytest.mark.parametrize("cancel_at", [1, STEPS - 1])
def test_comfy_cancel_then_same_seed_equals_fresh(node_model, cancel_at):
    fresh = node_clip(node_model)
    weights = copy.deepcopy(node_model.model.state_dict())
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        node_clip(node_model, cancel_at)
    assert not comfy.model_management.interrupt_processing
    assert all(torch.equal(v, weights[k]) for k, v in node_model.model.state_dict().items())
    assert torch.equal(node_clip(node_model), fresh)
