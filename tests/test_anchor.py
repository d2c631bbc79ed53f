"""Neighbour blending (anchor.py), the anchored DM's training target, and detail restoration (assemble.py)."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core import masks
from mardini_core.anchor import diffusion_offset, neighbour_blend, neighbour_weights
from mardini_core.generation.assemble import assemble_frames, neighbour_anchor
from mardini_core.config import MarDiniConfig
from mardini_core.errors import ConfigError


def test_neighbour_weights_interpolate_linearly_between_the_nearest_given_frames():
    w = neighbour_weights(masks.from_pattern("x...x").to_tensor())[0]
    assert w[1].tolist() == [0.75, 0, 0, 0, 0.25]
    assert w[2].tolist() == [0.5, 0, 0, 0, 0.5]
    assert w[0].tolist() == [1, 0, 0, 0, 0] and w[4].tolist() == [0, 0, 0, 0, 1]
    w = neighbour_weights(masks.from_pattern("..x.x..").to_tensor())[0]
    assert w[0].tolist() == w[1].tolist() == [0, 0, 1, 0, 0, 0, 0]  # one side only: the nearest given frame
    assert w[3].tolist() == [0, 0, 0.5, 0, 0.5, 0, 0]
    assert w[6].tolist() == [0, 0, 0, 0, 1, 0, 0]
    assert not neighbour_weights(torch.ones(4, dtype=torch.bool)).any()  # nothing given: nothing to blend


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=17))
def test_neighbour_blend_uses_only_given_frames_and_is_exact_on_linear_motion(masked_list):
    masked = torch.tensor([masked_list])
    weights = neighbour_weights(masked)[0]
    given = [j for j, m in enumerate(masked_list) if not m]
    assert not weights[:, [j for j, m in enumerate(masked_list) if m]].any()
    if given:
        torch.testing.assert_close(weights.sum(1), torch.ones(len(masked_list)))
    # a signal linear in time is reproduced exactly between the first and last given frame
    k = len(masked_list)
    ramp = torch.arange(k, dtype=torch.float64)[None, :, None] * torch.tensor([1.0, -2.0], dtype=torch.float64)
    blend = neighbour_blend(ramp, masked)
    if given:
        inside = slice(given[0], given[-1] + 1)
        torch.testing.assert_close(blend[:, inside], ramp[:, inside])


def test_diffusion_offset_is_zero_for_the_papers_formulation_and_the_blend_when_anchored():
    latents = torch.randn(2, 5, 3, 2, 2)
    masked = masks.interpolation(5).to_tensor(batch=2)
    assert not diffusion_offset(latents, masked, MarDiniConfig()).any()
    anchored = diffusion_offset(latents, masked, MarDiniConfig(anchor="neighbours"))
    torch.testing.assert_close(anchored[:, 2], 0.5 * (latents[:, 0] + latents[:, 4]))
    torch.testing.assert_close(anchored[:, 0], latents[:, 0])
    with pytest.raises(ConfigError, match="anchor"):
        MarDiniConfig(anchor="blend")


def test_detail_restoration_makes_static_regions_exact_and_leaves_given_frames_untouched():
    mask = masks.interpolation(5)
    scene = torch.rand(1, 3, 8, 8)
    images = torch.cat([scene, scene])  # a static scene: both ends equal
    blur = lambda x: torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)  # what a small VAE loses
    decoded = blur(scene).repeat(5, 1, 1, 1)
    restored = assemble_frames(decoded, images, mask, neighbour_anchor(decoded, images, mask))
    torch.testing.assert_close(restored, scene.repeat(5, 1, 1, 1))  # generated frames match the given ones exactly
    plain = assemble_frames(decoded, images, mask)
    assert torch.equal(plain[1:4], decoded[1:4]) and torch.equal(plain[[0, 4]], images)
    # frames-last layout (ComfyUI IMAGE) gives the same frames
    hwc_decoded, hwc_images = decoded.movedim(1, -1), images.movedim(1, -1)
    hwc = assemble_frames(hwc_decoded, hwc_images, mask, neighbour_anchor(hwc_decoded, hwc_images, mask))
    torch.testing.assert_close(hwc, restored.movedim(1, -1))


def test_detail_restoration_weights_each_given_frames_residual_by_time_and_clamps():
    mask = masks.interpolation(5)
    images = torch.stack([torch.full((3, 2, 2), 0.6), torch.full((3, 2, 2), 0.2)])
    decoded = torch.full((5, 3, 2, 2), 0.5)  # residuals: +0.1 at the first frame, -0.3 at the last
    out = assemble_frames(decoded, images, mask, neighbour_anchor(decoded, images, mask))
    torch.testing.assert_close(out[1], torch.full((3, 2, 2), 0.5 + 0.75 * 0.1 - 0.25 * 0.3))
    torch.testing.assert_close(out[2], torch.full((3, 2, 2), 0.5 + 0.5 * 0.1 - 0.5 * 0.3))
    bright_decoded, ones = torch.full((5, 3, 2, 2), 0.95), torch.ones(2, 3, 2, 2)
    bright = assemble_frames(bright_decoded, ones, mask, neighbour_anchor(bright_decoded, ones, mask))
    assert bright.max() <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=2, max_size=9).filter(lambda m: any(m) and not all(m)), st.integers(0, 2**31))
def test_a_decoded_frame_equal_to_the_anchors_reconstruction_returns_the_anchor_exactly(given_list, seed):
    """frame = A + D(z) - R(A): a zero residual (D(z) = R(A)) gives the anchor, any residual passes through once."""
    gen = torch.Generator().manual_seed(seed)
    mask = masks.FrameMask(tuple(given_list))
    k = len(given_list)
    images = torch.rand(mask.images_needed, 3, 4, 5, generator=gen)
    anchor, reconstruction = torch.rand(k, 3, 4, 5, generator=gen) * 0.8 + 0.1, torch.rand(k, 3, 4, 5, generator=gen)
    out = assemble_frames(reconstruction, images, mask, (anchor, reconstruction))
    generated = list(mask.generated_indices)
    torch.testing.assert_close(out[generated], anchor[generated])
    assert torch.equal(out[list(mask.given_indices)], images[list(mask.sources)])
    delta = torch.full_like(reconstruction, 0.05)
    shifted = assemble_frames(reconstruction + delta, images, mask, (anchor, reconstruction))
    torch.testing.assert_close(shifted[generated], (anchor[generated] + 0.05).clamp(0, 1))


class _Oracle:
    """A DM that knows the clean clip and returns the exact v for the residual from `offset`."""

    def __init__(self, clean, offset, anchor):
        self.clean, self.offset = clean, offset
        self.config = MarDiniConfig(anchor=anchor)
        self.generator = self

    def __call__(self, z_t, t, plan, masked, anchor=None):
        from mardini_core.noise_schedule import alpha_sigma

        a, s = (c[:, None, None, None, None] for c in alpha_sigma(t))
        residual = self.clean - self.offset
        eps = (z_t - self.offset - a * residual) / s
        return a * eps - s * residual


@pytest.mark.parametrize("anchor", ["none", "neighbours"])
def test_anchored_training_target_is_the_residual_from_the_neighbour_blend(anchor):
    from mardini_core.training.losses import diffusion_loss

    clean = torch.randn(2, 5, 3, 2, 2)
    masked = masks.interpolation(5).to_tensor(batch=2)
    t, eps, drop = torch.tensor([0.3, 0.8]), torch.randn_like(clean), torch.zeros(2, dtype=torch.bool)
    blend = neighbour_blend(clean, masked)
    right = _Oracle(clean, blend if anchor == "neighbours" else torch.zeros_like(clean), anchor)
    wrong = _Oracle(clean, torch.zeros_like(clean) if anchor == "neighbours" else blend, anchor)
    assert diffusion_loss(right, clean, None, masked, t, eps, drop) < 1e-10
    assert diffusion_loss(wrong, clean, None, masked, t, eps, drop) > 1e-2
