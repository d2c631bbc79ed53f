import pytest
import torch
from einops import einsum, rearrange

from mardini_core import masks
from mardini_core.config import preset
from mardini_core.errors import GenerationInterrupted, InputError, MaskError
from mardini_core.generation import encode_frames, generate, images_from_hwc, size_multiple
from mardini_core.generation import Hooks, Sampling
from support import live_tiny


class TinyVAE:
    """Deterministic stand-in VAE: each 8x8 RGB block -> `channels` numbers by a fixed orthonormal map."""

    downscale = 8

    def __init__(self, channels: int = 32):
        self.latent_channels = channels
        q, _ = torch.linalg.qr(torch.randn(192, 192, generator=torch.Generator().manual_seed(0)))
        self.proj = q[:channels]  # (C, 3 * 8 * 8)
        self.encoded = 0

    def encode(self, images):  # (N, 3, H, W) -> (N, C, H/8, W/8)
        self.encoded += images.shape[0]
        blocks = rearrange(images, "n c (h p) (w q) -> n h w (c p q)", p=8, q=8)
        return einsum(blocks, self.proj, "n h w d, c d -> n c h w")

    def decode(self, z):  # (N, C, h, w) -> (N, 3, 8h, 8w)
        blocks = einsum(z, self.proj, "n c h w, c d -> n h w d")
        return rearrange(blocks, "n h w (c p q) -> n c (h p) (w q)", c=3, p=8, q=8)


def count_calls(module):
    calls = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


@pytest.fixture(scope="module")
def model():
    return live_tiny()


def images(n=1, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_size_multiple_covers_both_patch_grids():
    assert size_multiple(preset("tiny/T")) == 32  # DM: 8 * 2; planner: 8 * 2 (downscale) * 2
    assert size_multiple(preset("tiny/T", planner_downscale=1)) == 16


def test_generate_keeps_references_exact_and_calls_planner_once(model):
    vae, img = TinyVAE(), images()
    planner_calls, generator_calls = count_calls(model.planner), count_calls(model.generator)
    out = generate(model, vae, img, masks.image_to_video(5, "middle"), Sampling(steps=3, guidance=2.5, seed=1))
    assert out.frames.shape == (5, 3, 32, 32) and out.latents.shape == (5, 32, 4, 4)
    assert torch.equal(out.frames[2], img[0])  # pixels pasted back exactly
    assert torch.equal(out.latents[2], vae.encode(img)[0])  # latents re-inserted exactly
    assert out.frames.min() >= 0 and out.frames.max() <= 1
    assert len(planner_calls) == 1 and len(generator_calls) == 3  # plan once, DM once per step (CFG batched)


def test_detail_restoration_adds_the_given_frames_vae_residual_to_generated_frames(model):
    vae, img = TinyVAE(), images()  # 32 of 192 dimensions per block: a lossy VAE
    mask = masks.image_to_video(5, "middle")
    plain = generate(model, vae, img, mask, Sampling(steps=2, seed=3), restore_detail=False)
    restored = generate(model, vae, img, mask, Sampling(steps=2, seed=3))
    assert torch.equal(plain.latents, restored.latents)  # restoration only touches pixels
    decoded = vae.decode(plain.latents).clamp(0, 1)
    residual = img[0] - vae.decode(vae.encode(img))[0].clamp(0, 1)
    assert residual.abs().max() > 0.05
    for k in (0, 1, 3, 4):  # one given frame: every generated frame gets all of its residual
        torch.testing.assert_close(plain.frames[k], decoded[k])
        torch.testing.assert_close(restored.frames[k], (decoded[k] + residual).clamp(0, 1))
    assert torch.equal(restored.frames[2], img[0]) and torch.equal(plain.frames[2], img[0])


def test_seeds(model):
    vae, img, mask = TinyVAE(), images(), masks.image_to_video(4)
    a, b, c = (generate(model, vae, img, mask, Sampling(steps=2, seed=s)).frames for s in (3, 3, 4))
    assert torch.equal(a, b)
    assert not torch.allclose(a[1:], c[1:])


def test_loop_uses_one_image_at_both_ends(model):
    img = images()
    out = generate(model, TinyVAE(), img, masks.loop(5), Sampling(steps=2))
    assert torch.equal(out.frames[0], img[0]) and torch.equal(out.frames[4], img[0])


def test_latent_scale_and_shift_give_model_space():
    config = preset("tiny/T").replace(latent_scale=0.5, latent_shift=0.25)
    vae, img = TinyVAE(), images(2, size=64)
    high, low = encode_frames(vae.encode, img, config)
    torch.testing.assert_close(high, (vae.encode(img) - 0.25) * 0.5)
    assert low.shape == (2, 32, 4, 4)
    small = torch.nn.functional.avg_pool2d(img, 2)  # the planner sees the frames at half size
    torch.testing.assert_close(low, (vae.encode(small) - 0.25) * 0.5)


def test_any_callable_encoder_works_channels_last():
    """A host VAE taking (N, H, W, C) images is adapted with a lambda (as the ComfyUI nodes do)."""
    vae, img = TinyVAE(), images()
    comfy_like = lambda hwc: vae.encode(rearrange(hwc, "n h w c -> n c h w"))  # noqa: E731
    high, _ = encode_frames(lambda x: comfy_like(rearrange(x, "n c h w -> n h w c")), img, preset("tiny/T"))
    torch.testing.assert_close(high, vae.encode(img))
    assert torch.equal(images_from_hwc(rearrange(img, "n c h w -> n h w c")), img)


def test_stop_hook_and_callback_pass_through(model):
    steps = []
    with pytest.raises(GenerationInterrupted):
        generate(model, TinyVAE(), images(), masks.image_to_video(3), Sampling(steps=4), hooks=Hooks(step=lambda i, n, x0: steps.append(i), should_stop=lambda: len(steps) >= 1))
    assert steps == [1]


@pytest.mark.parametrize(
    "imgs,mask,vae,message",
    [
        (images(size=48), masks.image_to_video(3), TinyVAE(), "multiple of 32 .* e.g. 32x32"),
        (torch.full((1, 3, 32, 32), float("nan")), masks.image_to_video(3), TinyVAE(), "NaN"),
        (torch.rand(1, 4, 32, 32), masks.image_to_video(3), TinyVAE(), "RGB"),
        (images(), masks.image_to_video(3), TinyVAE(16), "16-channel latents but the model expects 32"),
        (images(1), masks.interpolation(5), TinyVAE(), "takes 2 input images, got 1"),
    ],
)
def test_input_errors_name_the_fix(model, imgs, mask, vae, message):
    with pytest.raises(InputError, match=message):
        generate(model, vae, imgs, mask, Sampling(steps=1))


def test_mask_longer_than_window_refused(model):
    with pytest.raises(MaskError, match="exceeds the model's window of 9"):
        generate(model, TinyVAE(), images(), masks.image_to_video(10), Sampling(steps=1))


def test_encoder_of_wrong_shape_refused():
    with pytest.raises(InputError, match="the VAE returned latents of shape"):
        encode_frames(lambda x: torch.zeros(1, 32, 2, 2), images(), preset("tiny/T"))

