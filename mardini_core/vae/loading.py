"""Finding and loading the autoencoders: TAEF2 (published weights) and mardini-tae (our own).

TAEF2's files are PyTorch state dicts and are read only with `torch.load(weights_only=True)` (no
code runs); mardini-tae is read only from `.safetensors`, its architecture from the file's metadata.

Integrity: a TAEF2 file is read only when its sha256 is one of the published files' (`TAEF2_SHA256`)
or one the user listed in $MARDINI_TAEF2_SHA256 (a version we do not know yet): a flipped byte, a
truncated download or a substituted pickle is refused before `torch.load` opens it. mardini-tae files
carry the integrity hash over tensors and metadata that checkpoints carry (checkpoint.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file

from ..checkpoint import atomic_save_safetensors, check_tensors, sign_metadata, verify_integrity
from ..data.sources import shared_dir
from ..embedded import VAE_FILE
from ..errors import CheckpointError
from .autoencoder import TinyAutoencoder
from .tiny import TinyAEConfig

TAEF2 = "taef2"
MARDINI_TAE = "mardini-tae"
TAEF2_CONFIG = TinyAEConfig(latent_channels=32, width=64, blocks=3, mid_gn=True)
TAEF2_ENV = "MARDINI_TAEF2_DIR"
MARDINI_TAE_ENV = "MARDINI_TAE_PATH"
TAEF2_SHA256_ENV = "MARDINI_TAEF2_SHA256"
# sha256 of the published TAEF2 weights (github.com/madebyollin/taesd, taef2_encoder.pth and taef2_decoder.pth)
TAEF2_SHA256 = {
    "encoder": frozenset({"10a4e1021e89d7551eaf161352da8dbd0b1aa83872ae28b150c1df1ce2f147b6"}),
    "decoder": frozenset({"0a44a31e1ae59eb9dbf9359d24942fd3ef5928162c1800d97a28c61d51be0ab5"}),
}
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


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trusted_taef2_digests(part: str) -> frozenset[str]:
    """The published files' sha256 for `part` plus those listed in $MARDINI_TAEF2_SHA256."""
    extra = re.findall(r"[0-9a-f]{64}", os.environ.get(TAEF2_SHA256_ENV, "").lower())
    return TAEF2_SHA256[part] | frozenset(extra)


def check_taef2_file(path: Path, part: str) -> None:
    """Refuse a TAEF2 weights file whose sha256 is not a known one (before anything parses it)."""
    digest = file_sha256(path)
    if digest not in trusted_taef2_digests(part):
        raise CheckpointError(
            f"{path} is not the published TAEF2 {part} (sha256 {digest[:16]}...): the file is damaged or was replaced; "
            f"download taef2_{part}.pth again from github.com/madebyollin/taesd (a newer TAEF2 you trust: add its "
            f"sha256 to ${TAEF2_SHA256_ENV})"
        )


def _read_error(path: Path, exc: Exception) -> CheckpointError:
    """One line for a file that does not parse, never relaying PyTorch's advice to unpickle it anyway."""
    if isinstance(exc, pickle.UnpicklingError) or "weights_only" in str(exc):
        return CheckpointError(
            f"{path} holds Python objects besides tensors and was refused (MarDini never runs code from weight files); "
            "use the published weights file"
        )
    first = (str(exc).splitlines() or [""])[0][:200]
    return CheckpointError(f"cannot read {path} ({type(exc).__name__}: {first}); the file is corrupt or not a TAEF2 state dict")


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any parse failure of a user file becomes one clear line
        raise _read_error(path, exc) from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointError(f"{path} is not a TAEF2 state dict (names to tensors); use the published weights file")
    return state


def _fill(vae: TinyAutoencoder, encoder: dict, decoder: dict, source) -> None:
    check_tensors(str(source), {f"encoder.{k}": v for k, v in encoder.items()} | {f"decoder.{k}": v for k, v in decoder.items()}, vae.state_dict())
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
    files = {part: _taef2_file(folder, part) for part in ("encoder", "decoder")}
    for part, path in files.items():
        check_taef2_file(path, part)
    enc, dec = (_read_state(files[part]) for part in ("encoder", "decoder"))
    _fill(vae, enc, dec, folder)
    return vae.to(*default_device_dtype(device, dtype)).eval().requires_grad_(False)


def save_mardini_tae(path: str | os.PathLike, vae: TinyAutoencoder, metadata: dict[str, str] | None = None) -> None:
    """Atomically write mardini-tae in fp16 with its architecture as metadata."""
    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in vae.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=_FORMAT, config=json.dumps(vae.config.to_dict(), sort_keys=True))
    atomic_save_safetensors(path, tensors, sign_metadata(tensors, meta))


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
    verify_integrity(str(path), state, meta)
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
        return load_mardini_tae(os.environ.get(MARDINI_TAE_ENV) or VAE_FILE, device, dtype)
    path = Path(text)
    if path.is_dir():
        return load_taef2(path, device, dtype)
    if path.suffix == ".safetensors":
        return load_mardini_tae(path, device, dtype)
    raise CheckpointError(
        f"unknown VAE {text!r}; use 'taef2', a folder with taef2_encoder/decoder weights, or a mardini-tae .safetensors file"
    )
