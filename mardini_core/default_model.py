"""The embedded default model: a small MarDini and its autoencoder, shipped inside the package.

The paper's authors released no weights. This flow-anchored model (`configs/default/flow.toml`,
trained briefly on one GPU on the shared clips less the held-out files) makes every task run out of
the box; its latents are in the TAEF2 / FLUX.2 32-channel space, decoded by mardini-tae (bundled
beside it), by TAEF2 or by ComfyUI's FLUX.2 VAE. For quality, train your own (docs/training.md); how this one was made: docs/default-model.md.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .embedded import DEFAULT_DIR, MODEL_FILE, VAE_FILE
from .errors import CheckpointError
from .model import MarDini
from .vae import load_mardini_tae, save_mardini_tae

DEFAULT_VAE = "mardini-tae"

NO_DEFAULT = (
    "the embedded default model is missing from this install ({path}); reinstall the pack, or pass a "
    "checkpoint you trained yourself (the paper's authors released no weights)"
)


def load_default(device: str | torch.device = "cpu", dtype: torch.dtype | None = torch.float32) -> MarDini:
    """The bundled default MarDini (stored in fp16; float32 by default, which CPUs run fastest)."""
    if not MODEL_FILE.is_file():
        raise CheckpointError(NO_DEFAULT.format(path=MODEL_FILE))
    return load_checkpoint(MODEL_FILE, device=device, dtype=dtype).eval()


def package_default(model_path: str | os.PathLike, vae_path: str | os.PathLike, out_dir: str | os.PathLike = DEFAULT_DIR,
                    mean_scale: float | None = None, open_fidelity: float | None = None) -> Path:
    """Write a trained model (fp16, its VAE named mardini-tae, `mean_scale` and `open_fidelity` as
    calibrated on the training split with `eval --split train --mean-scale / --fidelity`) and its
    autoencoder into `out_dir`."""
    model = load_checkpoint(model_path)
    if model.config.latent_channels != 32:
        raise CheckpointError(f"{model_path} uses {model.config.latent_channels}-channel latents; mardini-tae makes 32")
    calibrated = {k: v for k, v in (("mean_scale", mean_scale), ("open_fidelity", open_fidelity)) if v is not None}
    model.relabel(vae=DEFAULT_VAE, **calibrated)
    out = Path(out_dir)
    save_checkpoint(out / MODEL_FILE.name, model.half(), {"source": Path(model_path).name})
    save_mardini_tae(out / VAE_FILE.name, load_mardini_tae(vae_path), {"source": Path(vae_path).name})
    return out
