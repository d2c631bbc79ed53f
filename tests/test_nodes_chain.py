"""The ComfyUI node chain (VAE Encode -> Planner -> Sampler -> Frame Assembler) makes the same frames as
`generation.generate` for one window: the nodes are the library's recipe, not a second one."""
import dataclasses
from pathlib import Path

import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from comfy_fakes import load_pack
from comfy_fakes.fake_vae import FakeVAE

PACK = load_pack()
N = PACK.NODE_CLASS_MAPPINGS

import folder_paths  # noqa: E402  (the fakes, installed by load_pack)
from mardini_core.checkpoint import save_checkpoint  # noqa: E402
from mardini_core.config import preset  # noqa: E402
from mardini_core.errors import InputError  # noqa: E402
from mardini_core.model import MarDini  # noqa: E402
from mardini_core.generation import generate, images_from_hwc  # noqa: E402
from mardini_core.generation import Sampling, resolve

ComfyVAE = PACK.nodes.comfy_vae.ComfyVAE


@pytest.fixture(scope="module", params=["none", "neighbours", "flow", "flow, mean_scale 0"])
def model(request):
    """A tiny random model of each anchor kind, saved in models/mardini and loaded by the loader node; the last is
    calibrated as the default model is (where its anchor moves, at fidelity 1, its sample is the anchor)."""
    anchor = request.param.split(",")[0]
    config = dataclasses.replace(preset("tiny/T"), anchor=anchor, max_frames=6, mean_scale=0.0 if "mean_scale" in request.param else 1.0)
    name = f"chain-{request.param.replace(', mean_scale ', '-')}.safetensors"
    path = Path(folder_paths.models_dir) / "mardini" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    net = MarDini(config)
    with torch.no_grad():  # a zero-initialised output layer would make every model the same
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    save_checkpoint(path, net)
    yield N["MarDiniModelLoader"]().load(name, "fp32", "auto", "cpu", interpolator="dis")[0]
    path.unlink()


@st.composite
def clips(draw):
    frames = draw(st.integers(3, 6))
    given_frames = draw(st.lists(st.booleans(), min_size=frames, max_size=frames).filter(lambda g: any(g) and not all(g)))
    return "".join("x" if g else "." for g in given_frames), draw(st.integers(0, 2**31)), draw(st.sampled_from([0.0, 0.5, 1.0]))


@settings(max_examples=5, deadline=None)
@given(clip=clips(), guidance=st.sampled_from([1.0, 2.5]), restore_detail=st.booleans())
@example(clip=("x...x", 3, 1.0), guidance=1.0, restore_detail=True)  # a kept window with every model that has one
def test_node_chain_equals_generate(model, clip, guidance, restore_detail):
    pattern, seed, fidelity = clip
    vae = FakeVAE(32, seed=seed % 7)
    mask = N["MarDiniFrameMask"]().build(len(pattern), "custom", 1, pattern)[0]
    images = torch.rand(mask.images_needed, 64, 64, 3, generator=torch.Generator().manual_seed(seed))
    steps = 3

    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    latent = N["MarDiniSampler"]().sample(model, plan, latents, mask, steps, guidance, seed, 0.0, True, fidelity)[0]
    decoded = []
    vae.decode = lambda z, decode=vae.decode: decoded.append(z.shape[0]) or decode(z)
    frames = N["MarDiniFrameAssembler"]().assemble(vae, latent, images, mask, restore_detail)[0]
    sampling = Sampling(steps=steps, guidance=guidance, seed=seed, fidelity=fidelity, guidance_follows_mask=True)  # the node's default
    kept = restore_detail and resolve(sampling, mask, model.config).keeps_anchor
    if kept:  # frames left as their anchor are not decoded, nor their anchor's R(A)
        assert sum(decoded) == len(mask.given_indices)
    else:
        assert sum(decoded) >= mask.frames

    window = generate(model.model, ComfyVAE(vae, model.config.latent_channels), images_from_hwc(images), mask, sampling,
                      restore_detail=restore_detail, interpolator=model.anchor)
    assert frames.shape == (mask.frames, 64, 64, 3)
    torch.testing.assert_close(frames, window.frames.movedim(1, -1), atol=1e-5, rtol=0)


@settings(max_examples=6, deadline=None)
@given(clip=clips())
@example(clip=("x...x", 3, 1.0))  # a kept window with every model that has one
def test_the_sampler_asks_for_the_plan_only_where_it_reads_it(model, clip):
    """The plan is a lazy input: ComfyUI runs the Planner node only where the sampler reads its plan, not where the
    sample is the anchor whatever the networks say (a model calibrated to mean_scale 0, at fidelity 1, where its anchor
    moves). There the samples without a plan are those with one; elsewhere a missing plan is refused in one line."""
    pattern, seed, fidelity = clip
    vae = FakeVAE(32, seed=seed % 7)
    mask = N["MarDiniFrameMask"]().build(len(pattern), "custom", 1, pattern)[0]
    images = torch.rand(mask.images_needed, 64, 64, 3, generator=torch.Generator().manual_seed(seed))
    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    sampler, args = N["MarDiniSampler"](), (3, 2.5, seed, 0.0, True, fidelity)
    moving = pattern[0] == pattern[-1] == "x" or (model.config.anchor == "flow" and pattern.count("x") >= 2)
    kept = model.config.mean_scale == 0 and fidelity == 1.0 and moving
    assert sampler.check_lazy_status(model, None, latents, mask, *args) == ([] if kept else ["plan"])
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    assert sampler.check_lazy_status(model, plan, latents, mask, *args) == []
    if kept:
        assert torch.equal(sampler.sample(model, None, latents, mask, *args)[0]["samples"],
                           sampler.sample(model, plan, latents, mask, *args)[0]["samples"])
    else:
        with pytest.raises(InputError, match="plan"):
            sampler.sample(model, None, latents, mask, *args)
