"""Every node's function runs on the CPU with a tiny random model, ComfyUI fakes and a fake VAE."""
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
from mardini_core.errors import CheckpointError, InputError, MaskError  # noqa: E402

CHECKPOINT = "tiny-test.safetensors"


@pytest.fixture(scope="module")
def model():
    return N["MarDiniModelLoader"]().load(save_tiny_preset(folder_paths.models_dir, CHECKPOINT), "auto", "auto", "cpu")[0]


def mask_of(frames, preset_name, given=2, pattern=""):
    return N["MarDiniFrameMask"]().build(frames, preset_name, given, pattern)[0]


def run_clip(model, vae, images, mask, steps=2, guidance=2.5, seed=0):
    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    latent = N["MarDiniSampler"]().sample(model, plan, latents, mask, steps, guidance, seed, 0.0)[0]
    return latents, latent, N["MarDiniFrameAssembler"]().assemble(vae, latent, images, mask)[0]


def test_loader_lists_checkpoints_and_registers_the_folder(model):
    choices = N["MarDiniModelLoader"].INPUT_TYPES()["required"]["model"][0]
    assert choices[0] == "(embedded default)" and CHECKPOINT in choices
    assert folder_paths.folder_names_and_paths["mardini"][0][0] == os.path.join(folder_paths.models_dir, "mardini")
    assert model.config.name == "tiny/T" and model.dtype == torch.float32 and model.offload_planner


def test_loader_missing_file_says_no_weights_were_released():
    with pytest.raises(CheckpointError, match="released no MarDini weights"):
        N["MarDiniModelLoader"]().load("nope.safetensors", "auto", "auto", "gpu")


def test_embedded_default_loads():
    loaded = N["MarDiniModelLoader"]().load("(embedded default)", "fp32", "sdpa", "gpu")[0]
    assert loaded.model.config.vae == "mardini-tae" and loaded.model.config.latent_channels == 32
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_missing_embedded_default_explains(monkeypatch, tmp_path):
    from mardini_core import default_model

    monkeypatch.setattr(default_model, "MODEL_FILE", tmp_path / "absent.safetensors")  # a broken install
    with pytest.raises(CheckpointError, match="embedded default model is missing.*released no weights"):
        N["MarDiniModelLoader"]().load("(embedded default)", "fp32", "sdpa", "gpu")


@pytest.mark.parametrize("preset_name,given,pattern", [
    ("image-to-video (first)", 1, "x........"),
    ("image-to-video (middle)", 1, "....x...."),
    ("image-to-video (last)", 1, "........x"),
    ("interpolation", 3, "x...x...x"),
    ("loop", 1, "x.......x"),
    ("expansion", 3, "xxx......"),
    ("custom", 1, "x..x....x"),
])
def test_frame_mask_presets(preset_name, given, pattern):
    mask, text = N["MarDiniFrameMask"]().build(9, preset_name, given, pattern)
    assert text == mask.pattern == pattern
    if preset_name != "custom":  # an empty pattern stands for the preset's
        assert N["MarDiniFrameMask"]().build(9, preset_name, given, "")[1] == pattern
    assert mask.sources == ((0, 0) if preset_name == "loop" else tuple(range(mask.images_needed)))


@pytest.mark.parametrize("args,match", [
    ((9, "custom", 1, "x..x"), "has 4 frames but 'frames' is 9"),
    ((9, "custom", 1, "x..?....."), "invalid characters"),
    ((9, "custom", 1, "xxxxxxxxx"), "no frame to generate"),
    ((9, "expansion", 9, ""), "expansion needs between 1 and 8"),
    # a typed pattern is never silently replaced by the preset's, valid or not
    ((9, "interpolation", 2, "x..y....x"), "is not the 'interpolation' preset's"),
    ((9, "interpolation", 2, "x...x...x"), "set preset to 'custom'"),
])
def test_frame_mask_errors(args, match):
    with pytest.raises(MaskError, match=match):
        N["MarDiniFrameMask"]().build(*args)


@pytest.mark.parametrize("packed", [False, True], ids=["32ch", "flux2-packed-128ch"])
def test_clip_end_to_end(model, packed):
    vae, mask = FakeVAE(32, packed=packed), mask_of(9, "interpolation")
    images = torch.rand(2, 64, 96, 3)
    comfy.utils.UPDATES.clear()
    latents, latent, frames = run_clip(model, vae, images, mask, steps=3)
    assert latents.window.high.shape == (2, 32, 8, 12) and latents.window.low.shape == (2, 32, 4, 6)
    native = (9, 128, 4, 6) if packed else (9, 32, 8, 12)
    assert latent["samples"].shape == native
    assert latent["noise_mask"].shape == (9, 1, *native[-2:])
    assert latent["noise_mask"][:, 0, 0, 0].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 0]
    # the sampler's 3 steps, then the Frame Assembler's decode, frame by frame
    assert [u[:2] for u in comfy.utils.UPDATES] == [(1, 3), (2, 3), (3, 3)] + [(i, 9) for i in range(1, 10)]
    assert frames.shape == (9, 64, 96, 3) and torch.isfinite(frames).all()
    assert torch.equal(frames[0], images[0]) and torch.equal(frames[8], images[1]), "given frames pasted back exactly"


def test_sampler_is_seeded(model):
    vae, mask, images = FakeVAE(32), mask_of(5, "image-to-video (first)"), torch.rand(1, 32, 32, 3)
    a = run_clip(model, vae, images, mask, seed=7)[1]["samples"]
    b = run_clip(model, vae, images, mask, seed=7)[1]["samples"]
    c = run_clip(model, vae, images, mask, seed=8)[1]["samples"]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sampler_choice_is_optional_and_dpmpp_2m_runs(model):
    vae, mask = FakeVAE(32), mask_of(5, "image-to-video (first)")
    latents = N["MarDiniVAEEncode"]().encode(model, vae, torch.rand(1, 32, 32, 3), mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    run = lambda eta=0.0, **kw: N["MarDiniSampler"]().sample(model, plan, latents, mask, 3, 2.5, 0, eta, fidelity=0.0, **kw)[0]["samples"]
    ddim, dpm = run(), run(sampler="dpmpp_2m")
    assert torch.equal(ddim, run(sampler="ddim")), "a saved workflow without the input samples as before"
    assert torch.isfinite(dpm).all() and not torch.equal(dpm, ddim)
    with pytest.raises(InputError, match="eta must be 0 with sampler dpmpp_2m"):
        run(eta=0.5, sampler="dpmpp_2m")


def test_loop_takes_one_image(model):
    frames = run_clip(model, FakeVAE(32), torch.rand(1, 32, 32, 3), mask_of(5, "loop"))[2]
    assert torch.equal(frames[0], frames[4])


def test_cancel_stops_the_sampler_with_comfys_exception(model):
    vae, mask = FakeVAE(32), mask_of(5, "image-to-video (first)")
    latents = N["MarDiniVAEEncode"]().encode(model, vae, torch.rand(1, 32, 32, 3), mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    comfy.model_management.interrupt_current_processing(True)
    with pytest.raises(comfy.model_management.InterruptProcessingException):
        N["MarDiniSampler"]().sample(model, plan, latents, mask, 5, 1.0, 0, 0.0)
    assert not comfy.model_management.interrupt_processing


def test_encode_errors_name_the_fix(model):
    enc, mask = N["MarDiniVAEEncode"](), mask_of(9, "interpolation")
    with pytest.raises(InputError, match="takes 2 input image"):
        enc.encode(model, FakeVAE(32), torch.rand(3, 64, 64, 3), mask)
    with pytest.raises(InputError, match="16-channel latents but this MarDini model expects 32"):
        enc.encode(model, FakeVAE(16), torch.rand(2, 64, 64, 3), mask)
    with pytest.raises(InputError, match="multiple of 32"):
        enc.encode(model, FakeVAE(32), torch.rand(2, 48, 64, 3), mask, fit="off")


def test_images_of_any_size_are_fitted_by_default(model):
    """fit = crop (the default) trims 48x72 to 32x64, centred; resize scales to the nearest valid size, 64x64."""
    enc, mask = N["MarDiniVAEEncode"](), mask_of(9, "interpolation")
    images = torch.rand(2, 48, 72, 3)
    assert enc.encode(model, FakeVAE(32), images, mask)[0].window.high.shape == (2, 32, 4, 8)
    assert enc.encode(model, FakeVAE(32), images, mask, fit="resize")[0].window.high.shape == (2, 32, 8, 8)
    latent = N["MarDiniSampler"]().sample(model, N["MarDiniPlanner"]().plan(model, enc.encode(model, FakeVAE(32), images, mask)[0], mask)[0],
                                          enc.encode(model, FakeVAE(32), images, mask)[0], mask, 1, 1.0, 0, 0.0)[0]
    frames = N["MarDiniFrameAssembler"]().assemble(FakeVAE(32), latent, images, mask)[0]
    assert frames.shape == (9, 32, 64, 3) and torch.equal(frames[0], images[0, 8:40, 4:68]), "given frames cropped the same way"


def test_nodes_refuse_mixed_masks(model):
    vae, first, last = FakeVAE(32), mask_of(5, "image-to-video (first)"), mask_of(5, "image-to-video (last)")
    latents = N["MarDiniVAEEncode"]().encode(model, vae, torch.rand(1, 32, 32, 3), first)[0]
    with pytest.raises(MaskError, match="connect the same MarDini Frame Mask"):
        N["MarDiniPlanner"]().plan(model, latents, last)


def test_mask_longer_than_the_window_points_to_long_video(model):
    with pytest.raises(MaskError, match="MarDini Long Video"):
        N["MarDiniVAEEncode"]().encode(model, FakeVAE(32), torch.rand(1, 32, 32, 3), mask_of(12, "image-to-video (first)"))


@pytest.mark.parametrize("mode,count,frames", [("slow motion", 3, 20), ("expansion", 2, 14), ("loop", 1, 12)])
def test_long_video(model, mode, count, frames):
    images = torch.rand(count, 32, 32, 3)
    comfy.utils.UPDATES.clear()
    video, plan = N["MarDiniLongVideo"]().generate(model, FakeVAE(32, packed=True), images, mode, frames, 0, 2, 1.0, 0, 0.0)
    assert video.shape == (frames, 32, 32, 3) and torch.isfinite(video).all()
    assert "model call(s)" in plan
    calls = int(plan.split(":")[1].split()[0])
    assert comfy.utils.UPDATES[-1][:2] == (calls * 2, calls * 2)
    done = sorted({u[0] for u in comfy.utils.UPDATES})
    assert all(2 * c in done for c in range(1, calls + 1))  # on the CPU the bar moves after every window, not every batch
    assert torch.equal(video[0], images[0])
    if mode == "slow motion":
        assert torch.equal(video[-1], images[-1])


def test_long_video_takes_fidelity_and_sampler_and_fills_its_progress_bar(model):
    images = torch.rand(3, 32, 32, 3)

    def run(**optional):
        return N["MarDiniLongVideo"]().generate(model, FakeVAE(32, packed=True), images, "slow motion", 20, 0, 3, 1.0, 0, 0.0,
                                                **optional)[0]

    ddim = run()
    assert not torch.equal(run(sampler="dpmpp_2m"), ddim)  # the sampler reaches the windows
    comfy.utils.UPDATES.clear()
    assert not torch.equal(run(fidelity=1.0), ddim)
    done, total = comfy.utils.UPDATES[-1][:2]
    assert done == total  # one pass per window still ends at a full bar


def test_the_sampler_fills_its_progress_bar_in_one_pass_as_in_many(model):
    vae, mask, images = FakeVAE(32), mask_of(5, "image-to-video (first)"), torch.rand(1, 64, 64, 3)
    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    plan = N["MarDiniPlanner"]().plan(model, latents, mask)[0]
    for fidelity in (1.0, 0.0):  # one pass, every step
        comfy.utils.UPDATES.clear()
        N["MarDiniSampler"]().sample(model, plan, latents, mask, 6, 2.5, 0, 0.0, True, fidelity)
        assert comfy.utils.UPDATES[-1][:2] == (6, 6)


def test_long_video_slow_motion_needs_two_images(model):
    with pytest.raises(InputError, match="at least 2 images"):
        N["MarDiniLongVideo"]().generate(model, FakeVAE(32), torch.rand(1, 32, 32, 3), "slow motion", 20, 0, 1, 1.0, 0, 0.0)


def test_live_preview_is_the_clip_as_a_strip(model):
    preview = PACK.nodes.preview
    vae, mask, images = FakeVAE(32), mask_of(5, "image-to-video (first)"), torch.rand(1, 64, 64, 3)
    latents = N["MarDiniVAEEncode"]().encode(model, vae, images, mask)[0]
    assert latents.preview_rgb.shape == (1, 3, 8, 8)
    projection = preview.fit_projection(latents.window.high, latents.preview_rgb)
    fitted = preview.strip(latents.window.high, projection)
    expected = latents.preview_rgb[0].movedim(0, -1)
    assert fitted.shape == (8, 8, 3)
    assert (fitted - expected).abs().mean() < (expected - expected.mean()).abs().mean(), "the fit explains the pixels"
    clip = preview.strip(torch.randn(5, 32, 8, 8), projection)
    assert clip.shape == (8, 40, 3) and clip.min() >= 0 and clip.max() <= 1
