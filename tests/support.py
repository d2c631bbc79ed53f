"""Helpers shared by the test modules: tiny live models, a stand-in VAE, damaged and malicious
files on disk, and a one-thread torch so many small cases stay fast on a shared CPU."""
from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from mardini_core.checkpoint import save_checkpoint
from mardini_core.config import preset
from mardini_core.model import MarDini


@contextlib.contextmanager
def one_thread():
    """Tiny models run faster on one thread than fighting other processes for two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def live_tiny(seed: int = 0, name: str = "tiny/T", **changes) -> MarDini:
    """A tiny preset (its fields `changes`) with its zero-initialised residual branches opened, so outputs depend on noise and plan."""
    torch.manual_seed(seed)
    model = MarDini(preset(name, **changes)).eval()
    for blk in model.generator.blocks:
        torch.nn.init.normal_(blk.ada.weight, std=0.05)
        torch.nn.init.normal_(blk.cross.proj.weight, std=0.05)
    torch.nn.init.normal_(model.generator.final.weight, std=0.05)
    return model


class StandInVAE:
    """8x average pool + fixed linear map (and back): cheap, deterministic, the pipeline's VAE interface."""

    downscale = 8

    def __init__(self, channels: int = 32):
        self.latent_channels = channels
        self.proj = torch.randn(channels, 3, generator=torch.Generator().manual_seed(1)) * 0.5
        self.encoded = 0

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        self.encoded += 1
        return torch.einsum("cr,nrhw->nchw", self.proj, F.avg_pool2d(images * 2 - 1, 8))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.einsum("cr,nchw->nrhw", torch.linalg.pinv(self.proj).T, z)
        return (F.interpolate(x, scale_factor=8, mode="nearest") + 1) / 2


def count_block_calls(model) -> list:
    """Appends to the returned list whenever a transformer block of either network runs."""
    calls: list = []
    for net in (model.planner, model.generator):
        net.blocks[0].register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def write_png(path: Path, width: int, height: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), (rng.random((height, width, 3)) * 255).astype(np.uint8))
    return path


def save_tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    save_checkpoint(path, live_tiny(seed))
    return path


class MarkerPickle:
    """Unpickling this creates `marker`: proof that a loader ran code from a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def evil_pickle_bytes(marker: Path) -> bytes:
    return pickle.dumps({"weight": MarkerPickle(marker)})


def evil_torch_save(path: Path, marker: Path) -> Path:
    """A torch.save zip file whose pickle would create `marker` when loaded without weights_only."""
    torch.save({"weight": MarkerPickle(marker)}, path)
    return path


def split(data: bytes) -> tuple[dict, bytes]:
    """A safetensors file's bytes -> (parsed header, tensor data)."""
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), data[8 + length :]


def join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def save_tiny_preset(models_dir: str | Path, name: str) -> str:
    """A freshly initialised tiny/T model (seed 0) saved as <models_dir>/mardini/<name>; returns `name`."""
    path = Path(models_dir) / "mardini" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(path, MarDini(preset("tiny/T")))
    return name


@contextlib.contextmanager
def tiny_through_loader_node(loader, models_dir: str | Path, name: str, seed: int):
    """A live tiny model saved as <models_dir>/mardini/<name> and loaded by the Load MarDini Model node
    class `loader` (fp32, one thread); the file is removed afterwards."""
    path = Path(models_dir) / "mardini" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, live_tiny(seed=seed))
    try:
        with one_thread():
            yield loader().load(path.name, "fp32", "auto", "gpu")[0]
    finally:
        path.unlink()


def refused_files(folder: Path, good: Path, marker: Path, flip_at: int, extra: dict[str, bytes], prefix: str = "") -> dict[str, Path]:
    """name -> a file every loader must refuse, written as <prefix><name>.safetensors in `folder`: an empty
    file, half of `good`, `good` with one bit flipped at `flip_at`, a pickle that would touch `marker`,
    the callers' `extra` forgeries, and a foreign safetensors file."""
    data = good.read_bytes()
    flipped = bytearray(data)
    flipped[flip_at] ^= 0x10
    files = {"empty": b"", "truncated": data[: len(data) // 2], "bitflip": bytes(flipped), "pickle": evil_pickle_bytes(marker), **extra}
    out = {}
    for name, content in files.items():
        out[name] = folder / f"{prefix}{name}.safetensors"
        out[name].write_bytes(content)
    out["foreign"] = folder / f"{prefix}foreign.safetensors"
    save_file({"weight": torch.zeros(4)}, out["foreign"])
    return out
