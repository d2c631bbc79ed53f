"""The flow-anchored model: the anchor it sees, a zero residual returning the flow frame, fidelity, training from frames."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core import masks
from mardini_core.config import MarDiniConfig, preset
from mardini_core.data.frames import FrameBank
from mardini_core.data.split import HELD_OUT_FILES
from mardini_core.data.synthetic import synthetic_clip
from mardini_core.errors import ConfigError, InputError, MemoryBudgetError
from mardini_core.interpolation import Dis, anchor_frames, load_interpolator
from mardini_core.model import MarDini
from mardini_core.generation import Anchor, Encoded, generate, sample, window_anchor
from mardini_core.generation import window as window_module
from mardini_core.generation.sampler import denoise
from mardini_core.noise_schedule import alpha_sigma
from mardini_core.video_io import write_frames
from mardini_core.generation import Sampling, resolve
from mardini_core.generation.settings import Resolved
from support import StandInVAE, live_tiny
from test_sampler import FakeModel, OracleGenerator, clip


def flow_tiny(seed: int = 0) -> MarDini:
    model = live_tiny(seed)
    flow = MarDini(model.config.replace(anchor="flow")).eval()
    state = {k: v for k, v in model.state_dict().items() if k != "generator.embed.weight"}
    flow.load_state_dict(state, strict=False)
    return flow


def moving_images(frames: int = 9, h: int = 64, w: int = 64) -> np.ndarray:
    """A textured square moving right: (frames, h, w, 3) float."""
    rng = np.random.default_rng(0)
    texture = rng.random((h, w, 3), dtype=np.float32)
    return np.stack([np.roll(texture, 2 * k, axis=1) for k in range(frames)])


def test_a_flow_anchored_generator_reads_the_anchor_and_refuses_to_run_without_it():
    model = flow_tiny()
    assert model.generator.embed.in_features == 2 * MarDini(preset("tiny/T")).generator.embed.in_features
    z, masked = torch.randn(1, 5, 32, 4, 4), masks.interpolation(5).to_tensor()
    with pytest.raises(InputError, match="anchor"):
        model.generator(z, torch.ones(1), None, masked)
    a = model.generator(z, torch.ones(1), None, masked, anchor=z)
    b = model.generator(z, torch.ones(1), None, masked, anchor=z + 1)
    assert not torch.allclose(a[masked], b[masked])  # the anchor reaches the prediction


def test_switching_to_or_from_the_flow_anchor_is_refused_where_shapes_would_change():
    model = live_tiny()
    with pytest.raises(ConfigError, match="flow"):
        model.relabel(anchor="flow")
    model.relabel(anchor="neighbours", mean_scale=0.5, open_fidelity=0.8)
    assert (model.config.mean_scale, model.config.open_fidelity) == (0.5, 0.8)
    with pytest.raises(ConfigError, match="mean_scale"):
        MarDiniConfig(mean_scale=0.5)  # no anchor: nothing to shrink towards
    for bad in (0.5, -0.1, 1.5, float("nan")):  # no anchor: the paper's DDIM, nothing to mix
        with pytest.raises(ConfigError, match="open_fidelity"):
            MarDiniConfig(anchor="none" if bad == 0.5 else "flow", open_fidelity=bad)


def test_a_zero_residual_returns_the_flow_frames_exactly_through_generate(monkeypatch):
    """The generator predicts no residual: every generated pixel is the flow anchor's, given ones the inputs."""
    model, vae = flow_tiny(), StandInVAE()
    truth = moving_images()
    mask = masks.interpolation(9)
    images = torch.from_numpy(truth[[0, -1]]).permute(0, 3, 1, 2)

    def zero_residual(z_t, t, plan, masked, cache=None, anchor=None):  # v of a clean residual of zero
        a, s = (c[:, None, None, None, None] for c in alpha_sigma(t))
        return a / s * (z_t - anchor)

    monkeypatch.setattr(model.generator, "forward", zero_residual)
    for interpolator in (None, Dis(), load_interpolator("rife", "fast")):  # None: the default (embedded RIFE, fast)
        out = generate(model, vae, images, mask, Sampling(steps=3, fidelity=0.0), interpolator=interpolator)
        used = load_interpolator() if interpolator is None else interpolator
        given_frames = truth * np.array(mask.given)[:, None, None, None]
        expected = torch.from_numpy(anchor_frames(given_frames, list(mask.given), used)).permute(0, 3, 1, 2)
        torch.testing.assert_close(out.frames[1:-1], expected[1:-1].clamp(0, 1), atol=1e-5, rtol=0)
        assert torch.equal(out.frames[[0, -1]], images)
        anchor = window_anchor(vae, images, torch.zeros(2, 32, 8, 8), mask, model.config, used)
        torch.testing.assert_close(out.latents[1:-1], anchor.latents[1:-1], atol=1e-5, rtol=0)
    dis_frames, rife_frames = (generate(model, vae, images, mask, Sampling(steps=1), interpolator=i).frames for i in (Dis(), None))
    assert not torch.allclose(dis_frames, rife_frames, atol=1e-3)  # the choice reaches the output


def given_latents(mask, anchor) -> Encoded:
    """A window's first stage from random latents of its given frames (no images: the sample stage reads none)."""
    return Encoded(mask, torch.zeros(0), torch.randn(2, 32, 4, 4), torch.randn(2, 32, 2, 2), anchor)


def test_without_the_flow_anchor_a_flow_model_is_refused_in_one_line():
    model = flow_tiny()
    with pytest.raises(InputError, match="flow anchor"):
        sample(model, [given_latents(masks.interpolation(5), Anchor("none"))], None, Sampling(steps=1))


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 5), st.integers(0, 2**31))
def test_fidelity_blends_the_first_steps_mean_with_the_sample(fidelity, steps, seed):
    reference, masked = clip()
    target = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))
    run = lambda f: denoise(FakeModel(OracleGenerator(target)), reference, masked, None, Resolved(steps=steps, fidelity=f), generator=torch.Generator().manual_seed(seed))
    sample, mean = run(0.0), run(1.0)
    out = run(fidelity)
    torch.testing.assert_close(out, fidelity * mean + (1 - fidelity) * sample, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[~masked], reference[~masked])


def test_fidelity_one_calls_the_generator_once_and_bad_values_are_refused():
    reference, masked = clip()
    gen = OracleGenerator(torch.randn_like(reference))
    denoise(FakeModel(gen), reference, masked, None, Resolved(steps=25, fidelity=1.0))
    assert gen.batches == [1]
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(InputError, match="fidelity"):
            denoise(FakeModel(gen), reference, masked, None, Resolved(steps=2, fidelity=bad))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=3, max_size=9).filter(lambda g: any(g) and not all(g)),
       st.sampled_from(["flow", "neighbours"]), st.floats(0, 1))
def test_default_fidelity_keeps_the_paper_and_follows_the_mask_for_anchored_models(given_row, anchor, open_fidelity):
    """The paper's DDIM without an anchor; the mean wherever the anchor moves (between given frames, and for
    the flow anchor past the ends of two or more given frames); the calibrated open_fidelity around a still copy."""
    mask = masks.from_indices(len(given_row), [i for i, g in enumerate(given_row) if g])
    default = lambda m, config: resolve(Sampling(), m, config)
    assert default(mask, MarDiniConfig()).fidelity == 0.0
    anchored = MarDiniConfig(anchor=anchor, open_fidelity=open_fidelity)
    moving = (given_row[0] and given_row[-1]) or (anchor == "flow" and sum(given_row) >= 2)  # continued past the ends
    assert default(mask, anchored).fidelity == (1.0 if moving else open_fidelity)
    assert default(masks.image_to_video(9), MarDiniConfig(anchor=anchor)).fidelity == 1.0  # checkpoints from before keep theirs
    assert default(mask, anchored).guidance == (1.0 if given_row[0] and given_row[-1] else 2.5)  # the paper's, by the mask
    assert resolve(Sampling(fidelity=0.3, guidance=4.0), mask, anchored).fidelity == 0.3  # what is set stands
    anchored = MarDiniConfig(anchor="flow")
    shrunk = anchored.replace(mean_scale=0.25)
    assert default(masks.interpolation(9), shrunk).mean_scale == 0.25
    assert default(masks.image_to_video(9), shrunk).mean_scale == 1.0  # around a still copy the residual is the motion: never shrunk
    assert default(masks.expansion(9, 3), shrunk).mean_scale == 0.25  # around continued motion it is a correction


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.integers(3, 9))
def test_synthetic_motion_is_seeded_and_moves(seed, frames):
    rng = np.random.default_rng(seed)
    background = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    foreground = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
    a = synthetic_clip(background, foreground, frames, torch.Generator().manual_seed(seed))
    b = synthetic_clip(background, foreground, frames, torch.Generator().manual_seed(seed))
    assert a.shape == (frames, 48, 64, 3) and a.dtype == np.uint8 and np.array_equal(a, b)


def test_frame_bank_leaves_out_held_out_files_and_draws_clips_of_the_asked_size(tmp_path):
    video = moving_images(20, 48, 80)
    write_frames(video, tmp_path / "train.mp4", fps=10)
    held = sorted(f for f in HELD_OUT_FILES if f.endswith(".mp4"))[0]
    write_frames(video, tmp_path / held, fps=10)
    assert len(FrameBank([tmp_path], side=48, frames=9)) == 2
    bank = FrameBank([tmp_path], side=48, frames=9, held_out=True)
    assert len(bank) == 1
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        assert bank.clip(32, 64, (1, 2), gen).shape == (9, 32, 64, 3)


def test_a_model_that_overflows_is_reported_in_one_line_not_as_bad_input_images(monkeypatch):
    model = live_tiny()
    monkeypatch.setattr(model.generator, "forward", lambda z_t, *a, **k: torch.full_like(z_t, float("nan")))
    with pytest.raises(InputError, match="model produced NaN") as info:
        sample(model, [given_latents(masks.interpolation(5), Anchor("none"))], None, Sampling(steps=2))
    assert "input images" not in str(info.value) and len(str(info.value).splitlines()) == 1


def test_frame_bank_refuses_videos_that_would_not_fit_in_memory_before_decoding(tmp_path, monkeypatch):
    write_frames(moving_images(20, 48, 80), tmp_path / "train.mp4", fps=10)
    monkeypatch.setenv("MARDINI_MEMORY_LIMIT", "100k")  # 20 frames of 48x80 need about 230 kB
    with pytest.raises(MemoryBudgetError, match="decoded training videos.*loader"):
        FrameBank([tmp_path], side=48, frames=9)


@settings(max_examples=30, deadline=None)
@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(1, 4), st.integers(0, 2**31))
def test_mean_scale_shrinks_only_the_mean_part(fidelity, scale, steps, seed):
    """f * scale * mean + (1 - f) * sample: the sample itself (f = 0) is never shrunk, whatever the step count."""
    reference, masked = clip()
    target = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))
    run = lambda f, s: denoise(FakeModel(OracleGenerator(target)), reference, masked, None, Resolved(steps=steps, fidelity=f, mean_scale=s), generator=torch.Generator().manual_seed(seed))
    sample, mean = run(0.0, 1.0), run(1.0, 1.0)
    assert torch.equal(run(0.0, scale), sample)
    torch.testing.assert_close(run(fidelity, scale)[masked], (fidelity * scale * mean + (1 - fidelity) * sample)[masked],
                               atol=1e-5, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.lists(st.booleans(), min_size=5, max_size=5).filter(lambda m: any(m) and not all(m)))
def test_the_pixel_loss_scores_frames_between_given_ones_against_the_anchor(seed, masked_row):
    """frame = A + D(E(A) + 0) - D(E(A)) = A exactly, so a zero residual scores 0 (the anchor's own error);
    a residual moves the loss only where a masked frame has given frames on both sides."""
    from mardini_core.training.losses import pixel_loss

    gen = torch.Generator().manual_seed(seed)
    model = flow_tiny()
    residual = torch.randn(2, 5, 32, 4, 4, generator=gen)
    decoder = torch.nn.Sequential(torch.nn.Conv2d(32, 3, 1), torch.nn.Upsample(scale_factor=8))
    masked = torch.tensor([masked_row, masked_row])
    z = torch.randn(2, 5, 32, 4, 4, generator=gen)
    pixels, anchor = torch.rand(2, 5, 3, 32, 32, generator=gen), torch.rand(2, 5, 3, 32, 32, generator=gen)
    plan = model.planner(torch.randn(2, 5, 32, 2, 2, generator=gen), masked)
    args = (z, plan, masked, torch.randn(z.shape, generator=gen), torch.randn(z.shape, generator=gen), pixels, anchor)
    model.generator.forward = lambda z_t, t, plan, masked, cache=None, anchor=None: torch.zeros_like(z_t)
    assert abs(pixel_loss(model, decoder, *args).item()) < 1e-6  # A + D(z) - D(z) rounds
    model.generator.forward = lambda z_t, t, plan, masked, cache=None, anchor=None: residual
    given = [i for i, m in enumerate(masked_row) if not m]
    bracketed = any(masked_row[i] for i in range(given[0], given[-1]))
    assert (abs(pixel_loss(model, decoder, *args).item()) > 1e-4) == bracketed


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.sampled_from(["ddim", "dpmpp_2m"]), st.floats(1.0, 4.0), st.integers(0, 2**31))
def test_a_sample_that_keeps_its_anchor_calls_no_network_and_is_what_the_full_path_gives(steps, sampler, guidance, seed):
    """Fidelity 1 with mean_scale 0 keeps none of the mean residual and mixes in nothing sampled: the result is the
    offset whatever the generator says, so it is not called, and the numbers are the full path's bit for bit."""
    reference, masked = clip()
    target = torch.randn(reference.shape, generator=torch.Generator().manual_seed(seed))
    kept = Resolved(steps=steps, guidance=guidance, fidelity=1.0, mean_scale=0.0, sampler=sampler)
    assert kept.keeps_anchor and not Resolved(fidelity=1.0, mean_scale=1e-9).keeps_anchor and not Resolved(fidelity=0.99, mean_scale=0.0).keeps_anchor
    generator = OracleGenerator(target)
    fast = denoise(FakeModel(generator), reference, masked, None, kept, generator=torch.Generator().manual_seed(seed))
    assert generator.batches == []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Resolved, "keeps_anchor", property(lambda self: False))
        full = denoise(FakeModel(OracleGenerator(target)), reference, masked, None, kept, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(fast, full)


def kept_tiny() -> MarDini:
    """The tiny flow model calibrated as the default is (mean_scale 0: where the anchor moves, the sample is the anchor)."""
    flow = flow_tiny()
    model = MarDini(flow.config.replace(mean_scale=0.0)).eval()
    model.load_state_dict(flow.state_dict())
    return model


@settings(max_examples=12, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=7).filter(lambda g: not all(g)), st.booleans(), st.integers(0, 2**31))
def test_windows_that_keep_their_anchor_skip_planner_generator_and_decoding_and_match_the_full_path(inner, restore_detail, seed):
    """Between given frames the default model's sample is its anchor (Resolved.keeps_anchor): neither network runs,
    and with detail restoration a kept frame is the anchor's pixels, so it is not decoded either (nor its R(A)).
    Whatever the mask, the frames and latents are those the full path computes."""
    model, vae = kept_tiny(), StandInVAE()
    mask = masks.from_pattern("".join("x" if g else "." for g in [True, *inner, True]))
    images = torch.rand(mask.images_needed, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    calls = []
    for net in (model.planner, model.generator):
        net.register_forward_hook(lambda *_: calls.append(1))
    decoded = []
    decode = vae.decode
    vae.decode = lambda z: decoded.append(z.shape[0]) or decode(z)
    fast = generate(model, vae, images, mask, Sampling(steps=3), restore_detail=restore_detail, interpolator=Dis())
    assert calls == []
    assert sum(decoded) == (0 if restore_detail else len(mask.generated_indices))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Resolved, "keeps_anchor", property(lambda self: False))
        patch.setattr(window_module, "anchor_kept", lambda *args: [])
        full = generate(model, vae, images, mask, Sampling(steps=3), restore_detail=restore_detail, interpolator=Dis())
    assert calls and sum(decoded) > 0
    assert torch.equal(fast.latents, full.latents)
    torch.testing.assert_close(fast.frames, full.frames, atol=1e-6, rtol=0)
    assert torch.equal(fast.frames[list(mask.given_indices)], images[list(mask.sources)])
