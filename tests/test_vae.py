"""The autoencoders: TAEF2 reproduces real frames, mardini-tae round-trips through safetensors, errors are clear."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mardini_core.data import shared_dir
from mardini_core.errors import CheckpointError, InputError
from mardini_core.vae import TinyAEConfig, TinyAutoencoder, load_mardini_tae, load_vae, run_frames, save_mardini_tae
from mardini_core.vae.distill import DistillConfig, distil
from mardini_core.vae.quality import evaluation_frames, psnr, reconstruction_psnr

CLIPS = shared_dir() / "data" / "clips"
TAEF2_DIR = shared_dir() / "weights" / "taef2"
needs_taef2 = pytest.mark.skipif(not TAEF2_DIR.is_dir(), reason=f"TAEF2 weights not found at {TAEF2_DIR} (set MARDINI_SHARED)")
needs_clips = pytest.mark.skipif(not CLIPS.is_dir(), reason=f"shared clips not found at {CLIPS} (set MARDINI_SHARED)")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def taef2():
    return load_vae("taef2")


@pytest.fixture(scope="module")
def real_frames():
    return evaluation_frames([CLIPS / "bikes.mp4"], per_segment=2, size=64)["bikes.mp4"][:2]


@needs_taef2
@needs_clips
def test_taef2_reconstructs_real_frames(taef2, real_frames):
    z = taef2.encode(real_frames)
    assert z.shape == (2, 32, 8, 8) and z.dtype == torch.float32
    assert taef2.latent_channels == 32 and taef2.downscale == 8 and taef2.name == "taef2"
    scores = reconstruction_psnr(taef2, real_frames)
    assert scores.min() > 22, scores  # 64 px frames are dense in detail; a wrongly built network lands below 12
    noise = torch.rand_like(real_frames)
    assert psnr(taef2.decode(taef2.encode(noise)), real_frames).max() < 15  # the metric itself discriminates


@needs_taef2
def test_batching_does_not_change_results(taef2):
    x = torch.rand(5, 3, 16, 24)
    taef2.batch = 2
    split = taef2.encode(x)
    taef2.batch = 8
    torch.testing.assert_close(split, taef2.encode(x), rtol=1e-5, atol=1e-5)


@needs_taef2
def test_encode_rejects_bad_images(taef2):
    with pytest.raises(InputError, match="multiple of 8"):
        taef2.encode(torch.rand(1, 3, 20, 16))
    with pytest.raises(InputError, match=r"\(N, 32, h, w\)"):
        taef2.decode(torch.rand(1, 16, 4, 4))


def test_missing_taef2_names_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("MARDINI_TAEF2_DIR", str(tmp_path))
    with pytest.raises(CheckpointError, match="MARDINI_TAEF2_DIR") as err:
        load_vae("taef2")
    assert str(tmp_path) in str(err.value)


def test_mardini_tae_roundtrip_is_small_and_exact(tmp_path):
    torch.manual_seed(0)
    vae = TinyAutoencoder("mardini-tae", TinyAEConfig(latent_channels=32, width=16, blocks=1))
    path = tmp_path / "tae.safetensors"
    save_mardini_tae(path, vae)
    loaded = load_vae(str(path))
    assert loaded.name == "mardini-tae" and loaded.config == vae.config
    vae.half().float()  # the file is fp16: compare with the rounded weights
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded.encode(x), vae.encode(x))
    assert path.stat().st_size < 200_000


def test_mardini_tae_refuses_pickles_and_foreign_files(tmp_path):
    fake = tmp_path / "evil.safetensors"
    fake.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="not a mardini-tae file"):
        load_vae(str(fake))
    with pytest.raises(CheckpointError, match="only read from .safetensors"):
        load_mardini_tae(tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="unknown VAE"):
        load_vae("sdxl")


@needs_taef2
@needs_clips
def test_distillation_moves_the_student_towards_taef2(taef2, real_frames):
    crops = real_frames[:, :, :32, :32].repeat(4, 1, 1, 1)
    cfg = DistillConfig(width=8, blocks=1, steps=40, batch=4, lr=3e-3, warmup=5)
    torch.manual_seed(cfg.seed)
    before = TinyAutoencoder("mardini-tae", TinyAEConfig(32, 8, 1))  # the student's initial weights
    student = distil(taef2, crops, cfg, log=open("/dev/null", "w"))
    target = taef2.encode(crops)
    assert (student.encode(crops) - target).pow(2).mean() < 0.7 * (before.encode(crops) - target).pow(2).mean()
    assert (student.decode(target) - crops).abs().mean() < 0.7 * (before.decode(target) - crops).abs().mean()


@needs_taef2
@needs_clips
def test_train_vae_and_vae_psnr_commands(tmp_path, capsys):
    from mardini_core.cli import main

    out = tmp_path / "tae.safetensors"
    clip = str(CLIPS / "carphone_pristine.mp4")
    args = ["--data", clip, "--out", str(out), "--steps", "3", "--bank", "8", "--batch", "2", "--width", "8", "--blocks", "1"]
    assert main(["train-vae", *args, "--eval-per-segment", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(report["psnr_db"]) == {"taef2", "mardini-tae", "enc:ours>dec:taef2", "enc:taef2>dec:ours"}
    assert report["psnr_db"]["taef2"]["mean"] > report["psnr_db"]["mardini-tae"]["mean"]  # 3 steps teach little
    assert load_vae(str(out)).config.width == 8
    again = tmp_path / "again.safetensors"
    assert main(["train-vae", *args[:2], "--out", str(again), "--init", str(out), "--steps", "2", "--bank", "8", "--batch", "2", "--eval-per-segment", "0"]) == 0
    assert load_vae(str(again)).config.width == 8  # continued from --init, not a fresh default-width student
    capsys.readouterr()
    assert main(["vae-psnr", "--data", clip, "--vae", str(out), "--vae", "taef2", "--per-segment", "1", "--size", "64", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["psnr_db"]
    assert set(table) == {str(out), "taef2"} and table["taef2"]["carphone_pristine.mp4"] > 25
    # --held-out leaves the project's held-out files out: carphone_pristine.mp4 is one, so nothing is left to train on
    assert main(["train-vae", *args[:2], "--out", str(tmp_path / "none.safetensors"), "--held-out", "--steps", "1", "--bank", "2"]) == 2
    assert "carphone_pristine.mp4" in capsys.readouterr().err and not (tmp_path / "none.safetensors").exists()


@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_run_frames_gives_the_plain_runs_pixels_in_the_usual_layout(n, h, w, seed):
    """Both autoencoder paths (mardini_core's batches and the ComfyUI VAE's packed nets) run the convolutions
    channels-last, one frame at a time on a CPU, for speed; what comes out is the plain run's numbers for the
    whole batch, contiguous as callers expect."""
    vae = TinyAutoencoder("t", TinyAEConfig(width=8, blocks=1)).eval()
    g = torch.Generator().manual_seed(seed)
    images, latents = torch.rand(n, 3, 8 * h, 8 * w, generator=g), torch.randn(n, 32, h, w, generator=g)
    with torch.no_grad():
        for net, x in ((vae.encoder, images), (vae.decoder, latents)):
            fast = run_frames(net, x)
            assert fast.is_contiguous()
            torch.testing.assert_close(fast, net(x), atol=1e-5, rtol=1e-5)
