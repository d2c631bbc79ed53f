"""Property tests of the generation entry points (`generation.generate` and its plan and sample stages) with a
tiny model and a stand-in VAE: bad requests fail fast with a MarDiniError that names the problem, before
the VAE or any transformer block runs; good requests give finite frames with the references pasted back."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mardini_core import masks
from mardini_core.errors import MarDiniError
from mardini_core.generation import Anchor, Encoded, Sampling, encode_frames, generate, plan, sample, size_multiple
from support import StandInVAE, count_block_calls, live_tiny, one_thread

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
MANY = settings(max_examples=1000, deadline=None, suppress_health_check=FIXTURES)
VALID_RUNS = settings(max_examples=100, deadline=None, suppress_health_check=FIXTURES)


@pytest.fixture(scope="module")
def model():
    with one_thread():
        yield live_tiny()


@pytest.fixture(scope="module")
def blocks_run(model):
    return count_block_calls(model)


def valid_masks(window: int):
    frames = st.integers(2, window)
    return st.one_of(
        st.builds(masks.image_to_video, frames, st.sampled_from(masks.POSITIONS)),
        st.builds(masks.interpolation, st.integers(3, window)),
        st.builds(masks.loop, st.integers(3, window)),
        frames.flatmap(lambda k: st.builds(masks.expansion, st.just(k), st.integers(1, k - 1))),
    )


# One defect each: (name, what the error message must mention). Each case draws one to three of them.
DEFECTS = {
    "nan_pixel": "NaN",
    "inf_pixel": "NaN or infinite",
    "odd_size": "multiple of",
    "zero_size": "multiple of",
    "channels": "RGB",
    "ndim": "shape|input images",
    "empty_batch": "input images",
    "image_count": "input images",
    "long_mask": "window",
    "all_given": "no frame to generate",
    "no_reference": "no reference frame",
    "vae_channels": "channel",
    "steps": "steps",
    "guidance": "guidance",
    "eta": "eta",
    "seed": "seed",
}


@MANY
@given(data=st.data(), defects=st.lists(st.sampled_from(sorted(DEFECTS)), min_size=1, max_size=3, unique=True))
def test_bad_requests_fail_fast_with_a_clear_error(model, blocks_run, data, defects):
    window, multiple = model.config.max_frames, size_multiple(model.config)
    mask = data.draw(valid_masks(window), label="mask")
    n, c, h, w = mask.images_needed, 3, multiple, multiple * data.draw(st.integers(1, 2), label="wide")
    sampling = dict(steps=1, guidance=2.5, eta=0.0, seed=0)
    vae = StandInVAE(model.config.latent_channels)
    if "odd_size" in defects:
        h = data.draw(st.sampled_from([8, 16, 24, 33, 40, multiple + 8]), label="odd side")
    if "zero_size" in defects:
        w = 0
    if "channels" in defects:
        c = data.draw(st.sampled_from([1, 2, 4]), label="channels")
    if "image_count" in defects:
        n += data.draw(st.sampled_from([-1, 1, 2]), label="count change") if n > 1 else 1
    if "empty_batch" in defects:
        n = 0
    shape = (n, c, h, w)
    if "ndim" in defects:
        shape = data.draw(st.sampled_from([(n, c, h), (n, c, h, w, 1), (c, h, w)]), label="shape")
    images = torch.rand(shape, generator=torch.Generator().manual_seed(data.draw(st.integers(0, 99), label="pixels")))
    if ("nan_pixel" in defects or "inf_pixel" in defects) and images.numel():
        flat = images.view(-1)
        flat[data.draw(st.integers(0, flat.numel() - 1), label="bad pixel")] = (
            float("nan") if "nan_pixel" in defects else data.draw(st.sampled_from([float("inf"), float("-inf")]))
        )
    if "long_mask" in defects:
        mask = masks.image_to_video(data.draw(st.integers(window + 1, window + 40), label="long"))
    if "all_given" in defects:
        mask = masks.from_pattern("x" * data.draw(st.integers(1, window), label="given frames"))
    if "no_reference" in defects:
        mask = masks.from_pattern("." * data.draw(st.integers(1, window), label="generated frames"))
    if "vae_channels" in defects:
        vae = StandInVAE(data.draw(st.sampled_from([4, 16, 64]), label="vae channels"))
    bad_values = {
        "steps": [0, -1, 10**12, 2.5, True, "3", None],
        "guidance": [float("nan"), float("inf"), -1.0, "2"],  # None is the model's own default (generation.resolve)
        "eta": [float("nan"), float("-inf"), -0.5, None],
        "seed": [2**64, -(2**63) - 1, 1.5, "1", None],
    }
    for key, values in bad_values.items():
        if key in defects:
            sampling[key] = data.draw(st.sampled_from(values), label=key)
    before = len(blocks_run)
    with pytest.raises(MarDiniError) as caught:
        generate(model, vae, images, mask, Sampling(**sampling))
    message = str(caught.value)
    named = [word for d in defects for word in DEFECTS[d].split("|")]
    assert any(word.lower() in message.lower() for word in named), f"{defects}: {message}"
    assert len(blocks_run) == before, "the model ran before the request was refused"
    assert vae.encoded == 0, "the VAE ran before the request was refused"


LATENT_DEFECTS = {
    "nan": "NaN",
    "low_size": "low-resolution",
    "count": "low-resolution",
    "channels": "channels",
    "ndim": "shape",
    "empty": "input images",
    "odd_patch": "low-resolution",
}


@MANY
@given(data=st.data(), defect=st.sampled_from(sorted(LATENT_DEFECTS)))
def test_bad_latents_fail_fast_with_a_clear_error(model, blocks_run, data, defect):
    config, window = model.config, model.config.max_frames
    mask = data.draw(valid_masks(window), label="mask")
    n, c, hh, hw = mask.images_needed, config.latent_channels, 4, 4 * data.draw(st.integers(1, 3), label="wide")
    high, low = torch.randn(n, c, hh, hw), torch.randn(n, c, hh // 2, hw // 2)
    if defect == "nan":
        target = data.draw(st.sampled_from([high, low]), label="which")
        target.view(-1)[data.draw(st.integers(0, target.numel() - 1), label="where")] = float("nan")
    elif defect == "low_size":
        low = torch.randn(n, c, hh // 2 + data.draw(st.sampled_from([-1, 1, 2]), label="off"), hw // 2)
    elif defect == "count":
        low = torch.randn(n + 1, c, hh // 2, hw // 2)
    elif defect == "channels":
        c2 = data.draw(st.sampled_from([1, 16, 64]), label="channels")
        high, low = torch.randn(n, c2, hh, hw), torch.randn(n, c2, hh // 2, hw // 2)
    elif defect == "ndim":
        high = high[None]
    elif defect == "empty":
        high, low = high[:0], low[:0]
    elif defect == "odd_patch":
        high, low = torch.randn(n, c, 5, hw), torch.randn(n, c, 2, hw // 2)
    before = len(blocks_run)
    with pytest.raises(MarDiniError, match=LATENT_DEFECTS[defect]):
        window = Encoded(mask, torch.zeros(0), high, low, Anchor(model.config.anchor))
        sample(model, [window], plan(model, [window]), Sampling(steps=1))
    assert len(blocks_run) == before, "a transformer block ran on unusable latents"


@VALID_RUNS
@given(data=st.data())
def test_good_requests_generate_finite_frames_with_references_kept(model, data):
    config = model.config
    mask = data.draw(valid_masks(config.max_frames), label="mask")
    m = size_multiple(config)
    h, w = m * data.draw(st.integers(1, 2), label="tall"), m * data.draw(st.integers(1, 2), label="wide")
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.float16]), label="dtype")
    images = torch.rand(mask.images_needed, 3, h, w, generator=torch.Generator().manual_seed(3)).to(dtype)
    sampling = dict(
        steps=data.draw(st.integers(1, 2), label="steps"),
        guidance=data.draw(st.floats(0, 5), label="guidance"),
        eta=data.draw(st.floats(0, 1), label="eta"),
        seed=data.draw(st.integers(-(2**63), 2**64 - 1), label="seed"),
    )
    out = generate(model, StandInVAE(config.latent_channels), images, mask, Sampling(**sampling))
    assert out.frames.shape == (mask.frames, 3, h, w) and out.latents.shape[0] == mask.frames
    assert torch.isfinite(out.frames).all() and out.frames.min() >= 0 and out.frames.max() <= 1
    for frame, source in zip(mask.given_indices, mask.sources):
        assert torch.equal(out.frames[frame], images[source].float())


def test_good_latents_generate_the_window(model):
    """The sample stage's own checks accept what encode_frames makes."""
    vae, mask = StandInVAE(model.config.latent_channels), masks.interpolation(5)
    images = torch.rand(2, 3, 32, 64)
    high, low = encode_frames(vae.encode, images, model.config)
    window = Encoded(mask, images, high, low, Anchor(model.config.anchor))
    z = sample(model, [window], plan(model, [window]), Sampling(steps=1, seed=5))[0]
    assert z.shape == (5, *high.shape[1:]) and torch.isfinite(z).all()
    assert torch.equal(z[[0, 4]], high)
