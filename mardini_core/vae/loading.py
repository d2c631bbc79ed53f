"""Finding and loading the autoencoders: TAEF2 (published weights) and mardini-tae (our own).

TAEF2's files are PyTorch state dicts and are read only with `torch.load(weights_only=True)` (no
code runs); mardini-tae is read only from `.safetensors`, its architecture from the file's metadata.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..checkpoint import atomic_save_safetensors, content_digest
from ..data.sources import shared_dir
from ..errors import CheckpointError
from .autoencoder import TinyAutoencoder
from .tiny import TinyAEConfig

TAEF2 = "taef2"
MARDINI_TAE = "mardini-tae"
TAEF2_CONFIG = TinyAEConfig(latent_channels=32, width=64, blocks=3, mid_gn=True)
TAEF2_ENV = "MARDINI_TAEF2_DIR"
MARDINI_TAE_ENV = "MARDINI_TAE_PATH"
_FORMAT = "mardini-tae"


def default_taef2_dir() -> Path:
    """$MARDINI_TAEF2_DIR, else `weights/taef2` in the shared folder (this project's machines)."""
    env = os.environ.get(TAEF2_ENV)
    return Path(env) if env else shared_dir() / "weights" / "taef2"


def default_device_dtype(device, dtype) -> tuple[torch.device, torch.dtype]:
    device = torch.device(device)
    return device, dtype or (torch.float16 if device.type == "cuda" else torch.float32)


def _taef2_file(folder: Path, part: str) -> Path:
    for suffix in (".safetensors", ".pth"):
        path = folder / f"taef2_{part}{suffix}"
        if path.is_file():
            return path
    raise CheckpointError(
        f"TAEF2 weights not found: no taef2_{part}.pth or .safetensors in {folder}; download taef2_encoder.pth and "
        f"taef2_decoder.pth (github.com/madebyollin/taesd) into that folder or set {TAEF2_ENV} to their folder"
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a user file becomes one clear line
        raise CheckpointError(f"cannot read {path} ({type(exc).__name__}: {exc}); the file is corrupt or not a TAEF2 state dict") from exc


def _fill(vae: TinyAutoencoder, encoder: dict, decoder: dict, source) -> None:
    try:
        vae.encoder.load_state_dict(encoder, assign=True)  # assign: also fills a model built on the meta device
        vae.decoder.load_state_dict(decoder, assign=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{source} does not match the {vae.name} architecture ({first}); use the matching weights file") from exc


def load_taef2(folder: str | os.PathLike | None = None, device="cpu", dtype=None) -> TinyAutoencoder:
    """TAEF2 from a folder with taef2_encoder.* and taef2_decoder.* (default: `default_taef2_dir()`)."""
    folder = Path(folder) if folder else default_taef2_dir()
    vae = TinyAutoencoder(TAEF2, TAEF2_CONFIG)
    enc, dec = (_read_state(_taef2_file(folder, part)) for part in ("encoder", "decoder"))
    _fill(vae, enc, dec, folder)
    return vae.to(*default_device_dtype(device, dtype)).eval().requires_grad_(False)


def save_mardini_tae(path: str | os.PathLike, vae: TinyAutoencoder, metadata: dict[str, str] | None = None) -> None:
    """Atomically write mardini-tae in fp16 with its architecture as metadata."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in vae.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=_FORMAT, config=json.dumps(vae.config.to_dict(), sort_keys=True), content_sha256=content_digest(tensors))
    atomic_save_safetensors(path, tensors, meta)


def load_mardini_tae(path: str | os.PathLike, device="cpu", dtype=None) -> TinyAutoencoder:
    """mardini-tae from its `.safetensors` file (nothing else is accepted: no pickles)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path} is not a .safetensors file; mardini-tae weights are only read from .safetensors")
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist; train one with `python -m mardini_core train-vae` or fix the path")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = TinyAEConfig(**json.loads(meta["config"]))
        state = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path} is not a mardini-tae file ({type(exc).__name__}: {exc}); use one written by train-vae") from exc
    if meta.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a mardini-tae file (format {meta.get('format')!r}); use one written by train-vae")
    if "content_sha256" in meta and content_digest(state) != meta["content_sha256"]:
        raise CheckpointError(f"{path} failed its integrity check (content hash differs): the file is corrupt")
    with torch.device("meta"):  # a forged architecture allocates nothing before it is checked against the tensors
        vae = TinyAutoencoder(MARDINI_TAE, config)
    split = {part: {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(part + ".")} for part in ("encoder", "decoder")}
    _fill(vae, split["encoder"], split["decoder"], path)
    return vae.to(*default_device_dtype(device, dtype)).eval().requires_grad_(False)


def load_vae(name_or_path: str | os.PathLike, device="cpu", dtype=None) -> TinyAutoencoder:
    """"taef2" (default folder), a TAEF2 folder, "mardini-tae" ($MARDINI_TAE_PATH or the bundled one) or a mardini-tae .safetensors."""
    text = str(name_or_path)
    if text == TAEF2:
        return load_taef2(None, device, dtype)
    if text == MARDINI_TAE:  # $MARDINI_TAE_PATH, else the copy bundled with the embedded default model
        from ..default_model import VAE_FILE

        return load_mardini_tae(os.environ.get(MARDINI_TAE_ENV) or VAE_FILE, device, dtype)
    path = Path(text)
    if path.is_dir():
        return load_taef2(path, device, dtype)
    if path.suffix == ".safetensors":
        return load_mardini_tae(path, device, dtype)
    raise CheckpointError(
        f"unknown VAE {text!r}; use 'taef2', a folder with taef2_encoder/decoder weights, or a mardini-tae .safetensors file"
    )
