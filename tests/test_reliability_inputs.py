"""Hostile or careless inputs, generated: image formats and EXIF orientations, headers claiming huge
sizes, sizes and frame counts past the memory at hand, videos read under a memory budget, images with
NaN, wrong channels or 0..255 values at the nodes. Each ends in correct output or one clear line."""
from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mardini_core.errors import InputError, MarDiniError, MaskError, MemoryBudgetError, OutputError
from mardini_core.memory import LIMIT_ENV, USABLE, check_fits, generation_bytes
from mardini_core.video_io import GIF_MAX_SIDE, read_image, read_images, read_video, write_frames

Image = pytest.importorskip("PIL.Image")
ImageOps = pytest.importorskip("PIL.ImageOps")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def _budget_from_the_limit_alone(monkeypatch):
    """The memory budget is $MARDINI_MEMORY_LIMIT alone here, not what the shared machine has free."""
    monkeypatch.setattr("mardini_core.memory._host_available", lambda: 1 << 50)


def one_line(exc: BaseException) -> None:
    assert isinstance(exc, MarDiniError), f"{type(exc).__name__}: {exc}"
    assert len(str(exc).splitlines()) == 1 and str(exc), str(exc)


# --- formats and EXIF orientation -------------------------------------------------------------------

LOSSLESS = {"png": "PNG", "tiff": "TIFF", "webp": "WEBP"}


@FUZZ
@given(w=st.integers(1, 12), h=st.integers(1, 12), orientation=st.integers(1, 8), fmt=st.sampled_from(["png", "tiff", "webp", "jpg"]),
       mode=st.sampled_from(["RGB", "RGBA", "L"]), seed=st.integers(0, 2**16))
def test_images_come_out_upright_in_any_format(workdir, w, h, orientation, fmt, mode, seed):
    """What Pillow's ImageOps.exif_transpose shows is what read_image returns (lossless formats exactly)."""
    rng = np.random.default_rng(seed)
    pixels = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(pixels).convert(mode)
    if fmt == "jpg" and mode == "RGBA":
        image = image.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = workdir / f"oriented.{fmt}"
    kwargs = {"lossless": True} if fmt == "webp" else {"quality": 95} if fmt == "jpg" else {}
    image.save(path, LOSSLESS.get(fmt, "JPEG"), exif=exif.tobytes(), **kwargs)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB"), np.float32) / 255
    got = read_image(path)
    assert got.shape == expected.shape, (orientation, got.shape, expected.shape)
    if fmt == "jpg":  # two JPEG decoders may differ by a level or two
        assert np.abs(got - expected).mean() < 0.03
    else:
        np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)


# --- headers claiming huge sizes -------------------------------------------------------------------

def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of image data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@FUZZ
@given(width=st.integers(1, 200_000), height=st.integers(1, 200_000), limit_mb=st.integers(1, 512))
def test_image_headers_claiming_any_size(workdir, monkeypatch, width, height, limit_mb):
    """No allocation follows a header's claim unchecked: past the pixel limit or the memory budget the
    image is refused from its header; otherwise decoding the (truncated) data fails with one line."""
    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    path = workdir / "claims.png"
    path.write_bytes(png_claiming(width, height))
    try:
        image = read_image(path)
    except MarDiniError as exc:
        one_line(exc)
        if width * height * 20 > USABLE * limit_mb * 2**20:
            assert any(w in str(exc) for w in ("needs about", "megapixels")), str(exc)
        return
    assert image.shape == (height, width, 3) and width * height <= 16 // 3  # only a claim the data can fill decodes


def test_100000_pixel_header_is_one_line(workdir):
    path = workdir / "huge.png"
    path.write_bytes(png_claiming(100_000, 100_000))
    with pytest.raises(InputError, match="claims (100000x100000 pixels|10000 megapixels)"):
        read_image(path)


# --- sizes and frame counts against the memory budget -------------------------------------------------

@FUZZ
@given(frames=st.integers(1, 4096), window=st.integers(2, 17), side=st.tuples(st.integers(1, 256), st.integers(1, 256)),
       limit_mb=st.integers(1, 64 * 1024))
def test_generation_budget_is_checked_before_allocating(monkeypatch, frames, window, side, limit_mb):
    from mardini_core.commands.generate import check_budget
    from support import StandInVAE

    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    width, height = side[0] * 32, side[1] * 32
    need = generation_bytes(frames, min(frames, window), height, width, 64)
    try:
        check_budget("out.mp4", frames, window, StandInVAE(), torch.device("cpu"), width, height)
    except MemoryBudgetError as exc:
        one_line(exc)
        assert need > USABLE * limit_mb * 2**20 and "--size" in str(exc)
    else:
        assert need <= USABLE * limit_mb * 2**20


def test_size_8192_and_auto_sized_big_images_refused_before_work(workdir, monkeypatch, capsys):
    from mardini_core.cli import main
    from support import save_tiny_checkpoint, write_png

    import mardini_core.commands.generate as generate_cmd
    from support import StandInVAE

    model = save_tiny_checkpoint(workdir / "tiny_budget.safetensors")
    monkeypatch.setattr(generate_cmd, "resolve_vae", lambda name, device: StandInVAE())
    monkeypatch.setenv(LIMIT_ENV, "600M")
    small, big = write_png(workdir / "s.png", 32, 32), write_png(workdir / "big.png", 640, 640)
    for image, extra in ((small, ["--size", "8192x8192"]), (big, [])):
        out = workdir / "budget.mp4"
        rc = main(["generate", "--model", str(model), "--images", str(image), "--out", str(out), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and not out.exists() and err[-1].startswith("error: ") and "needs about" in err[-1], err


def test_size_applies_before_the_images_are_compared(workdir):
    from support import write_png

    a, b = write_png(workdir / "a64.png", 64, 48), write_png(workdir / "b32.png", 32, 32)
    with pytest.raises(InputError, match="differ in size"):
        read_images([a, b])
    assert read_images([a, b], size=(32, 32)).shape == (2, 32, 32, 3)


@pytest.fixture(scope="module")
def clip(workdir):
    frames = np.random.default_rng(3).random((6, 24, 32, 3)).astype(np.float32)
    return write_frames(frames, workdir / "budget_clip.mp4"), read_video(workdir / "budget_clip.mp4")[0]


@FUZZ
@given(limit_kb=st.integers(1, 200), max_frames=st.one_of(st.none(), st.integers(1, 10)))
def test_video_reads_within_the_budget_or_say_how_to(clip, monkeypatch, limit_kb, max_frames):
    path, whole = clip
    monkeypatch.setenv(LIMIT_ENV, f"{limit_kb}K")
    try:
        frames, _ = read_video(path, max_frames)
    except MemoryBudgetError as exc:
        one_line(exc)
        assert "--video-frames" in str(exc)
        assert min(len(whole), max_frames or len(whole)) * whole[0].nbytes > USABLE * limit_kb * 1024 * 0.5
    else:
        np.testing.assert_array_equal(frames, whole[: max_frames or len(whole)])


def test_check_fits_message():
    with pytest.raises(MemoryBudgetError, match=r"x needs about 1024\.0 TB .* do less"):
        check_fits(2**50, "x", "do less")


# --- output formats -----------------------------------------------------------------------------

def test_gif_wider_than_65535_is_refused_before_any_work(workdir, monkeypatch):
    import mardini_core.video_io as vio

    monkeypatch.setattr(vio, "_write_gif", lambda *_: pytest.fail("the GIF was encoded before the size check"))
    frames = np.zeros((1, 1, GIF_MAX_SIDE + 1, 3), np.float32)
    with pytest.raises(InputError, match="at most 65535 pixels a side"):
        write_frames(frames, workdir / "wide.gif")
    assert not (workdir / "wide.gif").exists()


def test_full_disk_while_writing_mp4_is_not_a_codec_problem(workdir, monkeypatch):
    import mardini_core.video_io as vio
    from collections import namedtuple

    class Broken:
        def __init__(self, *a):
            pass

        def isOpened(self):
            return False

    monkeypatch.setattr(vio.cv2, "VideoWriter", Broken)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr("mardini_core.outputs.shutil.disk_usage", lambda _p: usage(10**9, 10**9, 1000))
    with pytest.raises(OutputError, match="disk holding .* is full"):
        write_frames(np.zeros((2, 16, 16, 3), np.float32), workdir / "full.mp4")
    assert not (workdir / "full.mp4").exists()


# --- node input checks ----------------------------------------------------------------------------

def node_checks():
    """The pack's nodes/checks.py, imported the way ComfyUI imports the pack."""
    import importlib

    from comfy_fakes import load_pack

    return importlib.import_module(load_pack().__name__ + ".nodes.checks")


@FUZZ
@given(data=st.data())
def test_node_images_are_rgb_finite_and_0_to_1_or_refused(data):
    """images_for_mask (MarDini VAE Encode and Frame Assembler): any channel count, NaN, any value range."""
    from mardini_core import masks

    checks = node_checks()

    mask = masks.for_task("interpolate", 5, images=2)
    channels = data.draw(st.integers(1, 5), label="channels")
    scale = data.draw(st.sampled_from([1.0, 1.02, 255.0, -1.0, 2.0]), label="scale")
    images = torch.rand(2, 4, 4, channels) * scale
    if data.draw(st.booleans(), label="nan"):
        images[data.draw(st.integers(0, 1)), 0, 0, 0] = data.draw(st.sampled_from([float("nan"), float("inf")]))
    try:
        rgb = checks.images_for_mask(images, mask)
    except MarDiniError as exc:
        one_line(exc)
        return
    assert rgb.shape == (2, 4, 4, 3) and torch.isfinite(rgb).all() and rgb.min() >= 0 and rgb.max() <= 1
    assert channels in (3, 4) and scale in (1.0, 1.02)


@FUZZ
@given(pattern=st.text("x.", min_size=2, max_size=9), other=st.text("x.", min_size=2, max_size=9))
def test_assembler_refuses_a_latent_of_another_clip(pattern, other):
    from mardini_core.masks import from_pattern

    checks = node_checks()

    def mask_of(p):
        try:
            return from_pattern(p).validate()
        except MarDiniError:
            return None

    ours, theirs = mask_of(pattern), mask_of(other)
    if ours is None or theirs is None:
        return
    noise = torch.tensor([0.0 if g else 1.0 for g in theirs.given])[:, None, None, None].expand(-1, 1, 2, 2)
    try:
        checks.latent_matches_mask({"samples": torch.zeros(len(theirs.given), 4, 2, 2), "noise_mask": noise}, ours)
    except MaskError as exc:
        one_line(exc)
        assert ours.given != theirs.given
    else:
        assert ours.given == theirs.given or len(ours.given) != len(theirs.given)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 31), st.integers(0, 31))
def test_a_wrong_size_suggests_the_nearest_valid_size_and_the_fit_widget(h_cells, w_cells, dh, dw):
    """The suggestion is a multiple of the model's size step, the nearest one to each side, and names the fix."""
    from mardini_core.generation import check_images

    h, w = h_cells * 32 + dh, w_cells * 32 + dw
    if dh == 0 and dw == 0:
        return
    with pytest.raises(InputError) as caught:
        check_images(torch.zeros(1, 3, h, w), 32)
    message = str(caught.value)
    suggested = message.split("e.g. ")[1].split(" ")[0]
    sw, sh = (int(x) for x in suggested.split("x"))
    assert sw % 32 == 0 and sh % 32 == 0 and sw >= 32 and sh >= 32
    assert abs(sw - w) <= 16 and abs(sh - h) <= 16  # no valid size is nearer
    assert "'fit'" in message and "--size" in message


@FUZZ
@given(data=st.data())
def test_long_nodes_refuse_unusable_frames_fps_and_latents_in_one_line(data, tmp_path_factory):
    """Long Video and the Smoother check their IMAGE batch as VAE Encode does; the Smoother's fps (a link
    skips the widget's range) and the Assembler's LATENT (NaN from a latent math node) are checked too."""
    from comfy_fakes import load_pack
    from comfy_fakes.fake_vae import FakeVAE

    nodes = load_pack().NODE_CLASS_MAPPINGS
    scale = data.draw(st.sampled_from([1.0, 255.0, -1.0]), label="scale")
    images = torch.rand(3, 32, 32, data.draw(st.sampled_from([3, 1, 2]), label="channels")) * scale
    if data.draw(st.booleans(), label="nan"):
        images[1, 0, 0, 0] = float("nan")
    fps = data.draw(st.sampled_from([12.5, 0.0, -1.0, float("nan"), float("inf"), 1e9]), label="fps")
    usable = scale == 1.0 and images.shape[-1] == 3 and torch.isfinite(images).all()
    model = object()  # never reached: every check stands before the model is used
    calls = [(usable and fps == 12.5, lambda: nodes["MarDiniSmootherVideo"]().smooth(model, FakeVAE(32), images, "x2", fps, 1, 0)),
             (usable, lambda: nodes["MarDiniLongVideo"]().generate(model, FakeVAE(32), images, "slow motion", 9, 0, 1, 1.0, 0, 0.0))]
    for fine, call in calls:
        if fine:
            continue  # a usable request: the other tests run it
        with pytest.raises(MarDiniError) as caught:
            call()
        one_line(caught.value)
    latent = {"samples": torch.full((5, 32, 4, 4), float(data.draw(st.sampled_from(["nan", "inf", "-inf"]))))}
    mask = nodes["MarDiniFrameMask"]().build(5, "interpolation", 2, "")[0]
    with pytest.raises(MarDiniError, match="NaN or infinite"):
        nodes["MarDiniFrameAssembler"]().assemble(FakeVAE(32), latent, torch.rand(2, 32, 32, 3), mask)


@FUZZ
@given(count=st.integers(1, 6), side=st.integers(1, 8), limit_kb=st.integers(64, 8192))
def test_a_request_of_many_images_is_budgeted_whole_before_any_decoding(workdir, monkeypatch, count, side, limit_kb):
    """Each image fitting is not enough: the images of one request are checked together from their headers."""
    from mardini_core.video_io import read_images

    monkeypatch.setenv(LIMIT_ENV, f"{limit_kb}K")
    size = 32 * side
    paths = []
    for i in range(count):
        path = workdir / f"many_{side}_{i}.png"
        if not path.exists():
            Image.fromarray(np.full((size, size, 3), 40 * i % 255, np.uint8)).save(path)
        paths.append(path)
    need = count * size * size * (3 * 4 + 8)
    one = size * size * (3 * 4 + 8)
    try:
        images = read_images(paths)
    except MemoryBudgetError as exc:
        one_line(exc)
        assert need > USABLE * limit_kb * 1024 and ("fewer or smaller images" in str(exc) or one > USABLE * limit_kb * 1024)
    else:
        assert need <= USABLE * limit_kb * 1024 and images.shape == (count, size, size, 3)


def test_a_container_claiming_more_frames_than_bytes_is_not_believed(tmp_path):
    from mardini_core.video_io import header_frames

    small = tmp_path / "small.mp4"
    small.write_bytes(b"\0" * 1000)
    assert header_frames(1e9, small) == 1000 and header_frames(20, small) == 20
    assert header_frames(float("nan"), small) == 0 and header_frames(-5, small) == 0 and header_frames(0, small) == 0


@FUZZ
@given(frames=st.integers(2, 400), side=st.integers(1, 64), limit_mb=st.integers(16, 4096))
def test_node_requests_are_budgeted_whole_on_the_cpu(monkeypatch, frames, side, limit_mb):
    """The nodes' whole request (frames x size) against the memory, before any allocation, on the CPU."""
    from comfy_fakes import load_pack

    check_request = load_pack().nodes.checks.check_request
    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    need = generation_bytes(frames, min(frames, 9), 32 * side, 32 * side)
    try:
        check_request(frames, 9, 32 * side, 32 * side, "cpu")
    except MemoryBudgetError as exc:
        one_line(exc)
        assert need > USABLE * limit_mb * 2**20 and "Upscale Image" in str(exc)
    else:
        assert need <= USABLE * limit_mb * 2**20


@FUZZ
@given(frames=st.integers(2, 400), side=st.integers(1, 256), limit_mb=st.integers(16, 4096), gpu_gb=st.integers(1, 96))
def test_node_requests_on_a_gpu_budget_the_frames_in_ram_and_a_window_against_the_whole_gpu(monkeypatch, frames, side, limit_mb, gpu_gb):
    """On a GPU the frames still live in RAM, and one window's activations must fit the GPU's whole memory
    (ComfyUI moves other models out to make room, so what is free at the moment is not the limit)."""
    from types import SimpleNamespace

    from comfy_fakes import load_pack
    from mardini_core.memory import clip_bytes, window_bytes

    check_request = load_pack().nodes.checks.check_request
    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=gpu_gb << 30))
    host, device = clip_bytes(frames, 32 * side, 32 * side), window_bytes(min(frames, 9), 32 * side, 32 * side)
    try:
        check_request(frames, 9, 32 * side, 32 * side, "cuda")
    except MemoryBudgetError as exc:
        one_line(exc)
        assert host > USABLE * limit_mb * 2**20 or (device > USABLE * (gpu_gb << 30) and "GPU memory" in str(exc))
    else:
        assert host <= USABLE * limit_mb * 2**20 and device <= USABLE * (gpu_gb << 30)


@pytest.fixture(scope="module")
def short_video(workdir):
    from mardini_core.video_io import write_frames

    path = workdir / "short.mp4"
    write_frames(np.random.default_rng(0).random((6, 32, 48, 3)).astype(np.float32), path)
    return path


@FUZZ
@given(bank=st.integers(1, 1 << 20), crop=st.integers(1, 64), batch=st.integers(1, 1 << 16), every=st.integers(1, 8),
       limit_mb=st.integers(1, 48))
def test_train_vae_estimates_its_whole_run_before_reading_a_frame(short_video, monkeypatch, bank, crop, batch, every, limit_mb):
    """--bank, --batch and --crop drove the allocator past the machine unchecked; now the run's peak is
    estimated from the segments' frame counts, and a run that does not fit reads no frame."""
    from mardini_core.vae import distill

    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    cfg = distill.DistillConfig(bank=bank, crop=crop * 8, batch=batch, every=every, short_side=crop * 8)
    reads = []
    real = distill.read_indices
    monkeypatch.setattr(distill, "read_indices", lambda *a: reads.append(a) or real(*a))
    need = distill.distill_bytes(cfg, len(range(0, 6, every)))
    try:
        crops = distill.crop_bank([str(short_video)], cfg, set())
    except MemoryBudgetError as exc:
        one_line(exc)
        assert need > USABLE * limit_mb * 2**20 and not reads and "--bank" in str(exc)
        return
    assert need <= USABLE * limit_mb * 2**20 and crops.shape == (bank, 3, crop * 8, crop * 8)
    assert crops.numel() * 4 <= need  # the estimate covers at least the bank it made


@FUZZ
@given(side=st.tuples(st.integers(1, 12500), st.integers(1, 12500)), frames=st.integers(1, 64), batch=st.integers(1, 1 << 40),
       shard=st.integers(1, 1 << 40), limit_mb=st.integers(1, 64))
def test_encode_estimates_its_batches_and_shards_before_any_work(short_video, workdir, monkeypatch, side, frames, batch, shard, limit_mb):
    """`encode --size 100000x100000` reached OpenCV's allocator (a traceback); sizes, --batch and --shard-size
    are now checked against the memory budget before the first video is opened or --out is made."""
    from mardini_core.data import encode as enc
    from mardini_core.data.clips import ClipConfig
    from support import StandInVAE

    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    clip = ClipConfig(frames=frames, height=side[1] * 16, width=side[0] * 16)
    need = enc.encode_bytes(clip, batch, shard, 32)
    out = workdir / "shards_fuzz"
    if need <= USABLE * limit_mb * 2**20:
        return  # fits: an ordinary encode, tested elsewhere
    opened = []
    monkeypatch.setattr(enc, "VideoClips", lambda *a, **k: opened.append(a))
    with pytest.raises(MemoryBudgetError) as exc:
        enc.encode_videos([str(short_video)], out, StandInVAE(), clip, batch=batch, shard_size=shard)
    one_line(exc.value)
    assert "--batch" in str(exc.value) and not opened and not out.exists()


@FUZZ
@given(per_segment=st.integers(1, 1000), size=st.integers(1, 512), limit_mb=st.integers(1, 48))
def test_vae_psnr_estimates_its_frames_before_reading_one(short_video, monkeypatch, per_segment, size, limit_mb):
    """vae-psnr --size / --per-segment reached the allocator unchecked; the picks are now estimated first."""
    from mardini_core.vae import quality

    monkeypatch.setenv(LIMIT_ENV, f"{limit_mb}M")
    reads = []
    real = quality.read_indices
    monkeypatch.setattr(quality, "read_indices", lambda *a: reads.append(a) or real(*a))
    need = quality.psnr_bytes([(per_segment, (32, 48))], size * 8)
    try:
        frames = quality.evaluation_frames([str(short_video)], per_segment, size * 8)
    except MemoryBudgetError as exc:
        one_line(exc)
        assert need > USABLE * limit_mb * 2**20 and not reads and "--per-segment" in str(exc)
        return
    assert need <= USABLE * limit_mb * 2**20 and frames["short.mp4"].shape == (per_segment, 3, size * 8, size * 8)
