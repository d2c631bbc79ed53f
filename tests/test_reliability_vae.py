"""The VAE loader refuses damaged, foreign, forged and malicious files with one clear error, and never
unpickles: mardini-tae `.safetensors` files and TAEF2 `.pth` state dicts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mardini_core.errors import CheckpointError
from support import evil_torch_save, join, refused_files, split


vae = pytest.importorskip("mardini_core.vae")


@pytest.fixture(scope="module")
def good_tae(workdir):
    path = workdir / "tae.safetensors"
    torch.manual_seed(0)
    net = vae.TinyAutoencoder(vae.MARDINI_TAE, vae.TinyAEConfig(latent_channels=32, width=8, blocks=1, mid_gn=False))
    vae.save_mardini_tae(path, net)
    return path, vae.load_vae(path).state_dict()


def tae_bad_files(folder: Path, good_path: Path, marker: Path) -> dict[str, Path]:
    header, body = split(good_path.read_bytes())
    forgeries = {
        "forged_width": {"width": 16},
        "forged_huge": {"width": 10**9},
        "forged_negative": {"width": -3},
        "forged_big": {"width": 1024, "blocks": 64},  # ~40 GB of weights if built before the shape check
        "forged_type": {"mid_gn": "yes"},
    }
    extra = {}
    for name, changes in forgeries.items():
        forged = {**header, "__metadata__": dict(header["__metadata__"])}
        config = json.loads(forged["__metadata__"]["config"])
        config.update(changes)
        forged["__metadata__"]["config"] = json.dumps(config)
        extra[name] = join(forged, body)
    return refused_files(folder, good_path, marker, -50, extra, prefix="tae_")


TAE_BAD = ["empty", "truncated", "bitflip", "pickle", "forged_width", "forged_huge", "forged_negative", "forged_big",
           "forged_type", "foreign"]


@pytest.mark.parametrize("kind", TAE_BAD)
def test_vae_loader_refuses(good_tae, workdir, kind):
    marker = workdir / "TAE_UNPICKLED"
    folder = workdir / "tae_bad"
    folder.mkdir(exist_ok=True)
    files = tae_bad_files(folder, good_tae[0], marker)
    with pytest.raises(CheckpointError, match=f"tae_{kind}.safetensors"):
        vae.load_vae(files[kind])
    assert not marker.exists()


def test_vae_loader_never_unpickles_taef2_files(workdir):
    """TAEF2 .pth files go through torch.load(weights_only=True): a malicious one is refused, runs nothing."""
    marker = workdir / "TAEF2_UNPICKLED"
    folder = workdir / "taef2_evil"
    folder.mkdir(exist_ok=True)
    for part in ("encoder", "decoder"):
        evil_torch_save(folder / f"taef2_{part}.pth", marker)
    with pytest.raises(CheckpointError, match="taef2_encoder.pth"):
        vae.load_vae(folder)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["truncated", "bitflip", "pickle", "forged_big", "foreign"])
def test_cli_vae_refuses_with_one_line(good_tae, workdir, kind, capsys):
    from mardini_core.cli import main
    from support import save_tiny_checkpoint, write_png

    marker = workdir / "CLI_TAE_UNPICKLED"
    folder = workdir / "tae_cli"
    folder.mkdir(exist_ok=True)
    files = tae_bad_files(folder, good_tae[0], marker)
    model = workdir / "model.safetensors"
    if not model.exists():
        save_tiny_checkpoint(model)
    out = workdir / f"out_{kind}.gif"
    argv = ["generate", "--model", str(model), "--vae", str(files[kind]), "--images", str(write_png(workdir / "in.png", 32, 32)),
            "--steps", "1", "--out", str(out)]
    assert main(argv) == 2 and not out.exists() and not marker.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and f"tae_{kind}.safetensors" in err[0], err


TAEF2_REAL = Path(__file__).resolve().parents[1].parent / "shared" / "weights" / "taef2"


def _taef2_copy(folder: Path) -> Path:
    from mardini_core.vae.loading import default_taef2_dir

    source = default_taef2_dir()
    if not (source / "taef2_encoder.pth").is_file():
        pytest.skip(f"TAEF2 weights not found at {source}")
    folder.mkdir(exist_ok=True)
    for part in ("encoder", "decoder"):
        (folder / f"taef2_{part}.pth").write_bytes((source / f"taef2_{part}.pth").read_bytes())
    return folder


def test_taef2_with_a_flipped_byte_is_refused(workdir):
    folder = _taef2_copy(workdir / "taef2_flip")
    vae.load_vae(folder)  # the published files load
    path = folder / "taef2_decoder.pth"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="taef2_decoder.pth is not the published TAEF2 decoder"):
        vae.load_vae(folder)


def test_trusted_but_malicious_pth_never_relays_weights_only_advice(workdir, monkeypatch):
    """Even a file the user told us to trust goes through weights_only=True, and the refusal does not
    repeat PyTorch's advice to retry with weights_only=False."""
    from mardini_core.vae.loading import TAEF2_SHA256_ENV, file_sha256

    marker = workdir / "TRUSTED_UNPICKLED"
    folder = workdir / "taef2_trusted_evil"
    folder.mkdir(exist_ok=True)
    paths = [evil_torch_save(folder / f"taef2_{part}.pth", marker) for part in ("encoder", "decoder")]
    monkeypatch.setenv(TAEF2_SHA256_ENV, " ".join(file_sha256(p) for p in paths))
    with pytest.raises(CheckpointError) as info:
        vae.load_vae(folder)
    text = str(info.value)
    assert "weights_only" not in text and "never runs code" in text and len(text.splitlines()) == 1
    assert not marker.exists()
