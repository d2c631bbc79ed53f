"""One safetensors file per model: both networks' weights, the config as JSON metadata, a content hash.

Loading never unpickles anything. It reads and checks the header itself first, so a truncated,
empty, foreign or non-safetensors file (a pickle renamed `.safetensors`, say) gets one clear error,
then the config, the integrity hash (a flipped bit is refused), and every tensor's shape, dtype and
finiteness.

Integrity (`sign_metadata` / `verify_integrity`, shared by every safetensors file MarDini writes:
checkpoints, mardini-tae, training states): `integrity_sha256` is a sha256 over the tensors (names,
dtypes, shapes, bytes) AND every other metadata entry, so a flipped bit in the config (a
`latent_scale` of 1.0 read as 9.0) is refused like one in the weights. Files written before this hash
existed carry only `content_sha256` (tensors alone); they still load, but only after their metadata
has parsed and validated (config, shapes, dtypes, finite weights): re-save them with
`save_checkpoint(path, load_checkpoint(path))` to give them the full hash. (So a file whose
`integrity_sha256` was removed reads as such an older file: a single flipped bit cannot both remove
it and change the config.) A hash is not a signature: a forger can recompute it, so what a file
claims is still checked against what it holds.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import MarDiniConfig
from .atomic import atomic_path
from .errors import CheckpointError, ConfigError, OutputError
from .model import MarDini

FORMAT = "mardini"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024
INTEGRITY = "integrity_sha256"  # over tensors and metadata (new files)
LEGACY_INTEGRITY = "content_sha256"  # over tensors only (files written before INTEGRITY existed; still written for old readers)


def content_digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over names, dtypes, shapes and raw bytes of the tensors, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().data)
    return h.hexdigest()


def integrity_digest(content: str, metadata: dict[str, str]) -> str:
    """sha256 over a `content_digest` and every metadata entry but the integrity hash itself."""
    rest = {k: v for k, v in metadata.items() if k != INTEGRITY}
    return hashlib.sha256((content + "|" + json.dumps(rest, sort_keys=True)).encode()).hexdigest()


def sign_metadata(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> dict[str, str]:
    """The metadata with `content_sha256` (tensors) and `integrity_sha256` (tensors and metadata) added."""
    content = content_digest(tensors)
    meta = {str(k): str(v) for k, v in metadata.items() if k not in (INTEGRITY, LEGACY_INTEGRITY)}
    meta[LEGACY_INTEGRITY] = content
    meta[INTEGRITY] = integrity_digest(content, meta)
    return meta


def verify_integrity(name: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str], legacy_ok: bool = True) -> None:
    """Raise CheckpointError unless the file's hash matches what it holds.

    Files with `integrity_sha256` are checked over tensors and metadata. Older files with only
    `content_sha256` pass on their tensors when `legacy_ok` (their caller validates the metadata); a
    file with neither hash is refused."""
    content = content_digest(tensors)
    if INTEGRITY in metadata:
        if integrity_digest(content, metadata) != metadata[INTEGRITY] or metadata.get(LEGACY_INTEGRITY, content) != content:
            raise CheckpointError(
                f"{name} failed its integrity check (its weights or metadata differ from its hash): the file is "
                "corrupt or was altered; copy or download it again"
            )
        return
    if legacy_ok and LEGACY_INTEGRITY in metadata:
        if content != metadata[LEGACY_INTEGRITY]:
            raise CheckpointError(f"{name} failed its integrity check (content hash differs): the file is corrupt")
        return
    raise CheckpointError(f"{name} carries no integrity hash; it was not written by this MarDini, or was altered")


def atomic_save_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write the file atomically (atomic.py): a crash never leaves half a file. A failed write (a full
    disk: safetensors raises its own SafetensorError, not an OSError) is one OutputError naming the path."""
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=metadata)
    except (SafetensorError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise OutputError(
            f"could not write {path} ({first}); free disk space or choose a writable location (the previous file, if any, is intact)"
        ) from exc


def save_checkpoint(path: str | os.PathLike, model: MarDini, metadata: dict[str, str] | None = None) -> None:
    """Save both networks and the config in one safetensors file (atomically)."""
    tensors = {name: t.detach().contiguous().cpu() for name, t in model.state_dict().items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(format=FORMAT, format_version=FORMAT_VERSION, config=model.config.to_json(), preset=model.config.name)
    atomic_save_safetensors(path, tensors, sign_metadata(tensors, meta))


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
        except RecursionError:  # a header of deeply nested JSON: no real safetensors header nests
            raise CheckpointError(f"{path.name} has a corrupt safetensors header (nested too deeply); the file is damaged") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path.name} has a corrupt safetensors header; the file is damaged")
    return header


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The MarDini metadata of a checkpoint; CheckpointError for foreign safetensors files."""
    meta = read_header(path).get("__metadata__") or {}
    name = Path(path).name
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(f"{name} has a corrupt safetensors header (metadata is not a table of strings); the file is damaged")
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
    except (RecursionError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise CheckpointError(f"{Path(path).name} has an invalid model config ({type(exc).__name__}); the file is damaged or forged") from None


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
    verify_integrity(name, tensors, meta)
    with torch.device("meta"):
        model = MarDini(config)
    reference = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))[:3]
        extra = sorted(set(found) - set(expected))[:3]
        wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])[:3]
        raise CheckpointError(
            f"{name} does not match its own config (preset {config.name!r}): missing {missing}, "
            f"unexpected {extra}, wrong shapes {wrong}; the file was altered or written by another program"
        )
    check_tensors(name, tensors, reference)
    model.load_state_dict(tensors, assign=True)
    return model.to(device=device, dtype=dtype)


def check_tensors(name: str, tensors: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    """Raise CheckpointError for a tensor of the wrong kind (an integer one where a float one belongs)
    or float weights holding NaN or infinity (a diverged training run), or float weights of several
    dtypes (a file MarDini never writes: the networks would fail at their first step)."""
    floats = {str(t.dtype).replace("torch.", "") for t in tensors.values() if t.is_floating_point()}
    if len(floats) > 1:
        raise CheckpointError(f"{name} holds weights of several dtypes ({', '.join(sorted(floats))}); the file was altered or written by another program")
    for key, ref in reference.items():
        t = tensors.get(key)
        if t is None:  # missing tensors are the shape check's to report
            continue
        if t.is_floating_point() != ref.is_floating_point() or t.is_complex() or t.dtype == torch.bool and ref.dtype != torch.bool:
            raise CheckpointError(
                f"{name} holds {key} as {str(t.dtype).replace('torch.', '')} where {str(ref.dtype).replace('torch.', '')} "
                "belongs; the file was altered or written by another program"
            )
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise CheckpointError(
                f"{name} holds NaN or infinite weights ({key}): the training run that wrote it diverged; "
                "use an earlier checkpoint"
            )
