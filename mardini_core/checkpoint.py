"""One safetensors file per model: both networks' weights, the config as JSON metadata, a content hash.

Loading never unpickles anything. It reads and checks the header itself first, so a truncated,
empty, foreign or non-safetensors file (a pickle renamed `.safetensors`, say) gets one clear error,
then verifies the content hash (a flipped bit is refused), the config, and every tensor's shape.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import MarDiniConfig
from .atomic import atomic_path
from .errors import CheckpointError, ConfigError
from .model import MarDini

FORMAT = "mardini"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024


def content_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write the file atomically (atomic.py): a crash never leaves half a file."""
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def save_checkpoint(path: str | os.PathLike, model: MarDini, metadata: dict[str, str] | None = None) -> None:
    """Save both networks and the config in one safetensors file (atomically)."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        config=model.config.to_json(),
        preset=model.config.name,
        content_sha256=content_digest(tensors),
    )
    atomic_save_safetensors(path, tensors, meta)


def read_header(path: str | os.PathLike) -> dict:
    """The parsed safetensors header of `path`, with clear errors for anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the path or put the file in models/mardini")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path.name} is empty or truncated ({size} bytes); download or copy it again")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise CheckpointError(
                f"{path.name} is not a safetensors file (or is truncated); MarDini loads only .safetensors "
                "checkpoints and never unpickles files"
            )
        try:
            header = json.loads(f.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path.name} has a corrupt safetensors header ({exc}); the file is damaged") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name} has a corrupt safetensors header; the file is damaged")
    return header


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The MarDini metadata of a checkpoint; CheckpointError for foreign safetensors files."""
    meta = read_header(path).get("__metadata__") or {}
    name = Path(path).name
    if not isinstance(meta, dict):
        raise CheckpointError(f"{name} has a corrupt safetensors header (metadata is not a table); the file is damaged")
    if meta.get("format") != FORMAT:
        raise CheckpointError(
            f"{name} is a safetensors file but not a MarDini checkpoint (no MarDini config inside); "
            "pass a file written by MarDini's training or save_checkpoint"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has checkpoint format version {meta.get('format_version')!r}; "
            f"this MarDini reads version {FORMAT_VERSION}: update the pack"
        )
    return meta


def read_config(path: str | os.PathLike) -> MarDiniConfig:
    """The model config stored in a checkpoint, without loading any weights."""
    meta = read_metadata(path)
    try:
        return MarDiniConfig.from_json(meta.get("config", ""))
    except ConfigError as exc:
        raise CheckpointError(f"{Path(path).name} has an invalid model config: {exc}") from exc


def load_checkpoint(
    path: str | os.PathLike, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> MarDini:
    """Build the model its config describes and load its weights; every mismatch is a CheckpointError."""
    name = Path(path).name
    config = read_config(path)
    meta = read_metadata(path)
    try:
        tensors = load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for truncated data
        raise CheckpointError(f"{name} is truncated or corrupt ({exc}); download or copy it again") from exc
    if content_digest(tensors) != meta.get("content_sha256"):
        raise CheckpointError(f"{name} failed its integrity check (content hash differs): the file is corrupt")
    with torch.device("meta"):
        model = MarDini(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])[:3]
        raise CheckpointError(
            f"{name} does not match its own config (preset {config.name!r}): missing {missing}, "
            f"unexpected {extra}, wrong shapes {wrong}; the file was altered or written by another program"
        )
    model.load_state_dict(tensors, assign=True)
    return model.to(device=device, dtype=dtype)
