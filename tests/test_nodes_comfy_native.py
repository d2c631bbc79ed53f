"""What makes the pack behave like a native one in ComfyUI (issue 16): the embedded autoencoder as a VAE
output, ComfyUI's model management, the template examples in the input folder, guidance that follows
the mask, image fitting, and the smoother / slower video node."""
import os

import pytest
import torch

from comfy_fakes import load_pack
from comfy_fakes.fake_vae import FakeVAE

PACK = load_pack()
N = PACK.NODE_CLASS_MAPPINGS

import comfy.model_management  # noqa: E402  (the fakes, installed by load_pack)
import comfy.utils  # noqa: E402
import folder_paths  # noqa: E402
from support import save_tiny_preset  # noqa: E402
from mardini_core.fit import fit_images, valid_size  # noqa: E402
from mardini_core.vae import MARDINI_TAE, load_vae  # noqa: E402

CHECKPOINT = "tiny-native.safetensors"


@pytest.fixture(scope="module")
def loaded():
    return N["MarDiniModelLoader"]().load(save_tiny_preset(folder_paths.models_dir, CHECKPOINT), "auto", "auto", "auto")


def test_loader_returns_the_embedded_autoencoder_as_a_comfy_vae(loaded):
    """A comfy.sd.VAE in FLUX.2's packed layout (128 channels, 16x) that decodes exactly what mardini-tae does."""
    _, vae = loaded
    import comfy.sd

    assert isinstance(vae, comfy.sd.VAE) and vae.latent_channels == 128 and vae.spacial_compression_encode() == 16
    images = torch.rand(2, 64, 96, 3)
    z = vae.encode(images)
    assert z.shape == (2, 128, 4, 6)
    tae = load_vae(MARDINI_TAE)
    raw = tae.encode(images.movedim(-1, 1))
    assert torch.allclose(PACK.nodes.comfy_vae.unpack(z), raw, atol=1e-5)
    assert torch.allclose(vae.decode(z), tae.decode(raw).movedim(1, -1), atol=1e-5)


def test_networks_go_through_comfys_model_management(loaded):
    model, _ = loaded
    assert model.planner_patcher.model is model.model.planner and model.generator_patcher.model is model.model.generator
    comfy.model_management.LOADS.clear()
    vae = loaded[1]
    mask = N["MarDiniFrameMask"]().build(5, "interpolation", 2, "")[0]
    latents = N["MarDiniVAEEncode"]().encode(model, vae, torch.rand(2, 32, 32, 3), mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    N["MarDiniSampler"]().sample(model, plan, latents, mask, 1, 1.0, 0, 0.0)
    loads = comfy.model_management.LOADS
    assert model.planner_patcher in loads and model.generator_patcher in loads and vae.patcher in loads
    assert loads.index(model.planner_patcher) < loads.index(model.generator_patcher)


def test_planner_after_run_cpu_releases_the_planner_at_once(loaded):
    model = N["MarDiniModelLoader"]().load(CHECKPOINT, "auto", "auto", "cpu")[0]
    mask = N["MarDiniFrameMask"]().build(5, "interpolation", 2, "")[0]
    latents = N["MarDiniVAEEncode"]().encode(model, FakeVAE(32), torch.rand(2, 32, 32, 3), mask)[0]
    comfy.model_management.UNLOADS.clear()
    N["MarDiniPlanner"]().plan(model, latents, mask)
    assert comfy.model_management.UNLOADS == [model.planner_patcher]


def test_planner_after_run_defaults_to_comfys_choice():
    spec = N["MarDiniModelLoader"].INPUT_TYPES()["required"]["planner_after_run"]
    assert spec[1]["default"] == "auto"


def test_template_examples_are_copied_once_and_never_overwrite(tmp_path):
    examples = PACK.nodes.examples
    (tmp_path / "mardini_first_frame.png").write_bytes(b"the user's own picture")
    copied = examples.install_examples(tmp_path)
    assert "mardini_first_frame.png" not in copied and set(copied) == set(examples.EXAMPLES) - {"mardini_first_frame.png"}
    assert (tmp_path / "mardini_first_frame.png").read_bytes() == b"the user's own picture"
    for name, source in examples.EXAMPLES.items():
        assert (examples.ASSETS / source).is_file(), f"assets/{source} is missing"
        if name != "mardini_first_frame.png":
            assert (tmp_path / name).read_bytes() == (examples.ASSETS / source).read_bytes()
    assert examples.install_examples(tmp_path) == []


def test_examples_reach_comfys_input_folder_when_the_pack_loads():
    for name in PACK.nodes.examples.EXAMPLES:
        assert os.path.isfile(os.path.join(folder_paths.get_input_directory(), name)), name


@pytest.mark.parametrize("pattern,guidance,expected", [
    ("x........", 2.5, 2.5),  # one end given: guidance as set
    ("x.......x", 2.5, 1.0),  # both ends given: off
    ("....x....", 3.0, 3.0),
])
def test_guidance_follows_the_mask_by_default(pattern, guidance, expected):
    from mardini_core.config import MarDiniConfig
    from mardini_core.generation import resolve

    widgets = PACK.nodes.sampler.sampling_from_widgets
    mask = N["MarDiniFrameMask"]().build(len(pattern), "custom", 1, pattern)[0]
    assert resolve(widgets(25, guidance, 0, 0.0, guidance_follows_mask=True), mask, MarDiniConfig()).guidance == expected
    assert resolve(widgets(25, guidance, 0, 0.0, guidance_follows_mask=False), mask, MarDiniConfig()).guidance == guidance


@pytest.mark.parametrize("size,mode,expected", [
    ((256, 448), "crop", (256, 448)), ((270, 480), "crop", (256, 480)), ((270, 480), "resize", (256, 480)),
    ((250, 470), "resize", (256, 480)), ((20, 50), "crop", (32, 32)), ((270, 480), "off", (270, 480)),
])
def test_fit_sizes(size, mode, expected):
    assert valid_size(*size, 32, mode) == expected
    assert fit_images(torch.rand(1, 3, *size), 32, mode).shape[-2:] == expected


@pytest.mark.parametrize("multiplier,count", [("x2", 3), ("x4", 2)])
def test_smoother_video_fills_every_gap_and_keeps_the_frames(loaded, multiplier, count):
    model, vae = loaded
    video = torch.rand(count, 32, 32, 3)
    factor = int(multiplier[1:])
    comfy.utils.UPDATES.clear()
    frames, fps, plan = N["MarDiniSmootherVideo"]().smooth(model, vae, video, multiplier, 12.5, 2, 0)
    assert frames.shape == ((count - 1) * factor + 1, 32, 32, 3) and torch.isfinite(frames).all()
    assert fps == 12.5 * factor
    for i in range(count):
        assert torch.equal(frames[i * factor], video[i]), "the video's own frames come back exactly"
    assert comfy.utils.UPDATES[-1][0] == comfy.utils.UPDATES[-1][1], "the progress bar ends full"
    assert "model call(s)" in plan


def test_smoother_video_needs_two_frames(loaded):
    from mardini_core.errors import InputError

    with pytest.raises(InputError, match="at least 2 frames"):
        N["MarDiniSmootherVideo"]().smooth(*loaded, torch.rand(1, 32, 32, 3), "x2", 24.0, 1, 0)
